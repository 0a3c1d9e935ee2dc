//! The JSON error body every endpoint answers a failure with:
//! `{"error":{"code":"…","message":"…"}}`.
//!
//! The code is stable (clients branch on it) and says what the client
//! should do; the message is for people and may change. Each code has one
//! HTTP status ([`ErrorCode::status`]).

use serde::{Deserialize, Serialize};

/// A failure's stable code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ErrorCode {
    /// 400: a malformed request the other codes do not name.
    BadRequest,
    /// 400: a JSON body that does not parse or lacks a field.
    InvalidJson,
    /// 400: a tree path with `..`, NUL, an empty or over-long component.
    InvalidPath,
    /// 400: a volume or branch name that is not allowed.
    InvalidName,
    /// 400: a content key that is not `extent/ext-` and 32 hex digits.
    InvalidKey,
    /// 400: an uploaded extent whose bytes do not hash to its key.
    KeyMismatch,
    /// 401: no token, a malformed, unknown or revoked one.
    Unauthorized,
    /// 403: a valid token without the scope, or of another volume.
    Forbidden,
    /// 404: no such volume, path, branch, commit or extent.
    NotFound,
    /// 405: the path exists with other methods.
    MethodNotAllowed,
    /// 408: the request took longer than the server's per-request limit.
    Timeout,
    /// 409: the target exists, is busy (another writer), not empty, or of
    /// the wrong kind; or a merge stopped on conflicts.
    Conflict,
    /// 413: the body is larger than the server accepts.
    PayloadTooLarge,
    /// 416: a `Range` outside the object.
    RangeNotSatisfiable,
    /// 429: the token's request rate is used up; retry later.
    RateLimited,
    /// 431: the request's headers are larger than the server accepts.
    HeadersTooLarge,
    /// 500: the server failed; nothing is known to have changed.
    Internal,
    /// 503: the server is overloaded or shutting down; retry later.
    Unavailable,
    /// 400: a change of a read-only view (a commit).
    ReadOnly,
    /// 410: the changes after the sequence number asked for are no longer
    /// kept: start over from the volume's current state.
    Gone,
}

impl ErrorCode {
    /// The HTTP status of the code.
    pub fn status(self) -> u16 {
        match self {
            ErrorCode::BadRequest
            | ErrorCode::InvalidJson
            | ErrorCode::InvalidPath
            | ErrorCode::InvalidName
            | ErrorCode::InvalidKey
            | ErrorCode::KeyMismatch
            | ErrorCode::ReadOnly => 400,
            ErrorCode::Unauthorized => 401,
            ErrorCode::Forbidden => 403,
            ErrorCode::NotFound => 404,
            ErrorCode::MethodNotAllowed => 405,
            ErrorCode::Timeout => 408,
            ErrorCode::Conflict => 409,
            ErrorCode::Gone => 410,
            ErrorCode::PayloadTooLarge => 413,
            ErrorCode::RangeNotSatisfiable => 416,
            ErrorCode::RateLimited => 429,
            ErrorCode::HeadersTooLarge => 431,
            ErrorCode::Internal => 500,
            ErrorCode::Unavailable => 503,
        }
    }

    /// The code as it appears in the body.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::InvalidJson => "invalid_json",
            ErrorCode::InvalidPath => "invalid_path",
            ErrorCode::InvalidName => "invalid_name",
            ErrorCode::InvalidKey => "invalid_key",
            ErrorCode::KeyMismatch => "key_mismatch",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::NotFound => "not_found",
            ErrorCode::MethodNotAllowed => "method_not_allowed",
            ErrorCode::Timeout => "timeout",
            ErrorCode::Conflict => "conflict",
            ErrorCode::PayloadTooLarge => "payload_too_large",
            ErrorCode::RangeNotSatisfiable => "range_not_satisfiable",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::HeadersTooLarge => "headers_too_large",
            ErrorCode::Internal => "internal",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::ReadOnly => "read_only",
            ErrorCode::Gone => "gone",
        }
    }
}

/// A failure: its code and a message for people.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{message} ({})", code.as_str())]
pub struct ApiError {
    /// The stable code.
    pub code: ErrorCode,
    /// What went wrong, for people.
    pub message: String,
}

impl ApiError {
    /// An error of `code`.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    /// Its HTTP status.
    pub fn status(&self) -> u16 {
        self.code.status()
    }

    /// The body to send.
    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            error: self.clone(),
        }
    }
}

/// The JSON body of every failed request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// The failure.
    pub error: ApiError,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_has_the_documented_shape() {
        let e = ApiError::new(ErrorCode::KeyMismatch, "bytes hash to another key");
        let json = serde_json::to_value(e.body()).unwrap_or_default();
        assert_eq!(
            json,
            serde_json::json!({"error": {"code": "key_mismatch", "message": "bytes hash to another key"}})
        );
        // The serde name and as_str agree for every code.
        for code in [
            ErrorCode::BadRequest,
            ErrorCode::HeadersTooLarge,
            ErrorCode::RangeNotSatisfiable,
            ErrorCode::ReadOnly,
            ErrorCode::Gone,
        ] {
            let s = serde_json::to_value(code).unwrap_or_default();
            assert_eq!(s, serde_json::Value::from(code.as_str()));
        }
    }
}
