//! The change feed on the wire: pages of `GET …/changes` and the
//! messages of the `GET …/watch` WebSocket.
//!
//! Every change of a volume's content has a sequence number, 1, 2, 3 …
//! without gaps, in the order the changes committed (the engine writes
//! it in the same metadata transaction as the change). A follower keeps
//! the last number it handled and asks for what came after it, so a
//! restart of either side neither skips nor repeats a change. When the
//! volume no longer keeps the changes after that number, the answer is
//! [`crate::ErrorCode::Gone`] (410): start over from the volume's state.
//!
//! # The WebSocket
//!
//! `GET …/watch?since=N` upgrades to a WebSocket on which the server
//! sends JSON text messages ([`WatchEvent`]): first [`WatchEvent::Hello`],
//! then every change after `N` (all of them, in order, then each new one
//! as it commits). The server pings; a client that does not answer, or
//! does not read fast enough, is closed (code 1008 or 1013) and resumes
//! with `since` = the last number it handled. A client sends nothing but
//! pongs and a close: other messages count against it, and a flood of
//! them closes the socket (1008). On shutdown the server sends close
//! code 1001; when the cursor is older than the volume keeps, a
//! [`WatchEvent::Gone`] and close code 4410.

use serde::{Deserialize, Serialize};

/// Changes one page holds when the query names no limit.
pub const DEFAULT_CHANGES_LIMIT: u32 = 1000;
/// Most changes one page holds.
pub const MAX_CHANGES_LIMIT: u32 = 10_000;

/// Close code: the client broke the protocol (sent messages, flooded).
pub const CLOSE_POLICY: u16 = 1008;
/// Close code: the client read too slowly, or missed pings; resume.
pub const CLOSE_TRY_AGAIN: u16 = 1013;
/// Close code: the server is shutting down; resume elsewhere or later.
pub const CLOSE_GOING_AWAY: u16 = 1001;
/// Close code (private range): the changes after the cursor are no
/// longer kept, as [`WatchEvent::Gone`] said; start over.
pub const CLOSE_GONE: u16 = 4410;

/// `?since=N&limit=L&paths=true` of `GET …/changes`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChangesQuery {
    /// The changes after this number (default 0: from the oldest kept).
    #[serde(default)]
    pub since: u64,
    /// At most this many (default 1000, at most 10,000).
    #[serde(default)]
    pub limit: Option<u32>,
    /// Resolve each change's entry to its path now (costs a lookup per
    /// change).
    #[serde(default)]
    pub paths: bool,
}

/// `?since=N&paths=true` of `GET …/watch`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WatchQuery {
    /// Send the changes after this number first (default: only changes
    /// from now on).
    #[serde(default)]
    pub since: Option<u64>,
    /// Resolve each change's entry to its path.
    #[serde(default)]
    pub paths: bool,
}

/// One change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeedChange {
    /// Its sequence number.
    pub seq: u64,
    /// When it was made, ms (the writer's clock).
    pub at_ms: i64,
    /// The branch's id.
    pub branch_id: i64,
    /// The branch's name; absent once the branch is deleted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branch: Option<String>,
    /// What happened: `make`, `remove`, `rename`, `link`, `attr`,
    /// `xattr`, `data`, `branch-create`, `branch-delete`, `commit`,
    /// `reset` or `merge`.
    pub kind: String,
    /// The inode changed, where one is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ino: Option<i64>,
    /// The commit made, merged or reset to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<i64>,
    /// With `paths`: the entry changed (a rename's source), or the
    /// inode's path, as the branch shows it now (`/a/b`; bytes that are
    /// not UTF-8 as U+FFFD); absent when nothing names it any more.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// With `paths`: a rename's destination.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_path: Option<String>,
}

/// `GET …/changes`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangesPage {
    /// The changes after `since`, ascending.
    pub changes: Vec<FeedChange>,
    /// Pass as `since` for the next page: the last change's number, or
    /// `since` when there was none.
    pub next: u64,
    /// The newest number when the page was read: more pages follow while
    /// `next < last`.
    pub last: u64,
}

/// A message of the `…/watch` WebSocket, from the server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum WatchEvent {
    /// First message: the changes after `since` follow, and `last` was
    /// the newest when the socket opened.
    Hello {
        /// Where the feed starts.
        since: u64,
        /// The newest number then.
        last: u64,
    },
    /// One change.
    Change(FeedChange),
    /// The changes after `since` are no longer kept; the socket closes.
    Gone {
        /// Why, for people.
        message: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_have_the_documented_shape() {
        let c = FeedChange {
            seq: 3,
            at_ms: 5,
            branch_id: 1,
            branch: Some("main".into()),
            kind: "make".into(),
            ino: Some(7),
            commit: None,
            path: Some("/a".into()),
            to_path: None,
        };
        let v = serde_json::to_value(WatchEvent::Change(c.clone())).unwrap_or_default();
        assert_eq!(
            v,
            serde_json::json!({"type": "change", "seq": 3, "at_ms": 5, "branch_id": 1,
                "branch": "main", "kind": "make", "ino": 7, "path": "/a"})
        );
        let back: WatchEvent = serde_json::from_value(v).unwrap_or(WatchEvent::Gone {
            message: String::new(),
        });
        assert_eq!(back, WatchEvent::Change(c));
        let hello =
            serde_json::to_value(WatchEvent::Hello { since: 1, last: 2 }).unwrap_or_default();
        assert_eq!(
            hello,
            serde_json::json!({"type": "hello", "since": 1, "last": 2})
        );
    }
}
