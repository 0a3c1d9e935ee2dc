//! Conformance checks of the tree family: names, links, renames,
//! removal, orphans, permissions, extended attributes, and the tree of
//! each branch and commit.

use super::*;
use crate::names::Refused;
use crate::perm::Caller;
use crate::rename::RenameFlags;

const NOW: i64 = 1_000_000_000;
const HOLDER: &str = "host:1:1-0";

fn root_caller() -> Caller {
    Caller::root()
}

/// A refusal with `errno`, or a message.
fn refused<T: std::fmt::Debug>(what: &str, r: crate::Result<T>, want: Refused) -> CheckResult {
    err_kind(what, r, MetaErrorKind::Refused(want))
}

fn node<'a>(
    parent: Ino,
    name: &'a [u8],
    kind: NodeKind,
    mode: u32,
    caller: &'a Caller,
) -> MakeNode<'a> {
    MakeNode {
        branch: MAIN_BRANCH,
        parent,
        name,
        kind,
        mode,
        rdev: 0,
        target: None,
        page_size: PS,
        caller,
        now_ns: NOW,
        lease: None,
    }
}

async fn make(
    m: &dyn MetaEngine,
    parent: Ino,
    name: &[u8],
    kind: NodeKind,
    caller: &Caller,
) -> Result<Attr, String> {
    let mode = if kind == NodeKind::Dir { 0o755 } else { 0o644 };
    ok(
        &format!("make {}", String::from_utf8_lossy(name)),
        m.make(&node(parent, name, kind, mode, caller)).await,
    )
}

async fn names(m: &dyn MetaEngine, view: View, dir: Ino) -> Result<Vec<String>, String> {
    Ok(ok("readdir", m.readdir(view, dir, None, 10_000).await)?
        .into_iter()
        .map(|e| String::from_utf8_lossy(&e.name).into_owned())
        .collect())
}

async fn nlink(m: &dyn MetaEngine, ino: Ino) -> Result<u32, String> {
    Ok(ok("getattr", m.getattr(View::MAIN, ino).await)?.nlink)
}

pub(super) async fn basics(m: &dyn MetaEngine) -> CheckResult {
    init(m).await?;
    let root = ok("root", m.root().await)?;
    let r = ok("getattr root", m.getattr(View::MAIN, root).await)?;
    ensure!(r.kind == NodeKind::Dir && r.nlink == 2, "root is {r:?}");
    let me = root_caller();
    let d = make(m, root, b"d", NodeKind::Dir, &me).await?;
    ensure!(d.nlink == 2, "a new directory has nlink {}", d.nlink);
    ensure!(nlink(m, root).await? == 3, "root nlink after mkdir");
    let f = make(m, d.ino, b"f", NodeKind::File, &me).await?;
    ensure!(
        f.kind == NodeKind::File && f.size == 0 && f.page_size == PS && f.nlink == 1,
        "a new file is {f:?}"
    );
    ensure!(
        ok(
            "lease of a file made without one",
            m.lease(MAIN_BRANCH, f.ino).await
        )?
        .is_none(),
        "a file made without a lease has one"
    );
    // A file made with its write lease holds it at once (one transaction).
    let mut leased = node(d.ino, b"leased", NodeKind::File, 0o644, &me);
    leased.lease = Some(NewLease {
        holder: HOLDER,
        expires_ms: NOW / 1_000_000 + 60_000,
    });
    let leased = ok("make with a lease", m.make(&leased).await)?;
    let l = ok(
        "lease of the new file",
        m.lease(MAIN_BRANCH, leased.ino).await,
    )?;
    ensure!(
        l.as_ref().is_some_and(|l| l.holder == HOLDER),
        "the new file's lease is {l:?}"
    );
    let mut s = node(root, b"s", NodeKind::Symlink, 0o777, &me);
    s.target = Some(b"d/f");
    let s = ok("symlink", m.make(&s).await)?;
    ensure!(s.size == 3, "a symlink's size is its target's length");
    let got = ok("readlink", m.readlink(View::MAIN, s.ino).await)?;
    ensure!(&got[..] == b"d/f", "readlink gave {got:?}");
    refused(
        "readlink of a file",
        m.readlink(View::MAIN, f.ino).await,
        Refused::Invalid,
    )?;
    make(m, root, b"fifo", NodeKind::Fifo, &me).await?;
    let mut dev = node(root, b"dev", NodeKind::CharDev, 0o600, &me);
    dev.rdev = 0x0501;
    let dev = ok("mknod", m.make(&dev).await)?;
    ensure!(dev.rdev == 0x0501, "rdev kept: {dev:?}");
    // Names are bytes, in byte order.
    make(m, root, &[0xff, b'z'], NodeKind::File, &me).await?;
    make(m, root, b"A", NodeKind::File, &me).await?;
    let listed = ok("readdir", m.readdir(View::MAIN, root, None, 100).await)?;
    let listed: Vec<&[u8]> = listed.iter().map(|e| &e.name[..]).collect();
    ensure!(
        listed == [&b"A"[..], b"d", b"dev", b"fifo", b"s", &[0xff, b'z']],
        "readdir order: {listed:?}"
    );
    let plus = ok(
        "readdir_plus",
        m.readdir_plus(View::MAIN, root, None, 100).await,
    )?;
    ensure!(
        plus.len() == 6
            && plus.iter().all(|(e, a)| e.ino == a.ino && e.kind == a.kind)
            && plus
                .iter()
                .any(|(e, a)| &e.name[..] == b"d" && a.nlink == 2),
        "readdir_plus gives each entry's attributes: {plus:?}"
    );
    let after = ok(
        "readdir after",
        m.readdir(View::MAIN, root, Some(b"dev"), 2).await,
    )?;
    let after: Vec<&[u8]> = after.iter().map(|e| &e.name[..]).collect();
    ensure!(
        after == [&b"fifo"[..], b"s"],
        "readdir after a name: {after:?}"
    );
    let l = ok("lookup", m.lookup(View::MAIN, d.ino, b"f", &me).await)?;
    ensure!(l.ino == f.ino, "lookup found {l:?}");
    let dot = ok("lookup ..", m.lookup(View::MAIN, d.ino, b"..", &me).await)?;
    ensure!(dot.ino == root, "`..` of d is {}", dot.ino);
    refused(
        "lookup missing",
        m.lookup(View::MAIN, root, b"nope", &me).await,
        Refused::NotFound,
    )?;
    refused(
        "lookup in a file",
        m.lookup(View::MAIN, f.ino, b"x", &me).await,
        Refused::NotDir,
    )?;
    refused(
        "make over a name",
        m.make(&node(root, b"d", NodeKind::File, 0o644, &me)).await,
        Refused::Exists,
    )?;
    refused(
        "a 256-byte name",
        m.make(&node(root, &[b'x'; 256], NodeKind::File, 0o644, &me))
            .await,
        Refused::NameTooLong,
    )?;
    refused(
        "a name with /",
        m.make(&node(root, b"a/b", NodeKind::File, 0o644, &me))
            .await,
        Refused::Invalid,
    )?;
    // The flat API names the same files by path.
    let flat = ok("file by path", m.file(View::MAIN, "d/f").await)?;
    ensure!(
        flat.id == f.ino && flat.name == "d/f",
        "flat view: {flat:?}"
    );
    let made = ok(
        "create by path",
        m.create_file(MAIN_BRANCH, "x/y/z", PS, 5).await,
    )?;
    let x = ok("lookup x", m.lookup(View::MAIN, root, b"x", &me).await)?;
    ensure!(
        x.kind == NodeKind::Dir,
        "create_file made its parents: {x:?}"
    );
    let listed: Vec<String> = ok("list", m.list_files(View::MAIN, "").await)?
        .into_iter()
        .map(|f| f.name)
        .collect();
    ensure!(
        listed == ["A", "d/f", "d/leased", "x/y/z", "\u{fffd}z"],
        "list_files gives paths: {listed:?}"
    );
    ensure!(made.name == "x/y/z", "{made:?}");
    err_kind(
        "create_file through a file",
        m.create_file(MAIN_BRANCH, "d/f/g", PS, 5).await,
        MetaErrorKind::AlreadyExists,
    )?;
    err_kind(
        "create_file with an empty component",
        m.create_file(MAIN_BRANCH, "a//b", PS, 5).await,
        MetaErrorKind::InvalidInput,
    )?;
    Ok(())
}

pub(super) async fn renames(m: &dyn MetaEngine) -> CheckResult {
    init(m).await?;
    let me = root_caller();
    let root = ok("root", m.root().await)?;
    let a = make(m, root, b"a", NodeKind::Dir, &me).await?;
    let b = make(m, root, b"b", NodeKind::Dir, &me).await?;
    let sub = make(m, a.ino, b"sub", NodeKind::Dir, &me).await?;
    let f = make(m, a.ino, b"f", NodeKind::File, &me).await?;
    let g = make(m, b.ino, b"g", NodeKind::File, &me).await?;
    let rename = |p: Ino, n: &'static [u8], np: Ino, nn: &'static [u8], flags: RenameFlags| {
        m.rename(MAIN_BRANCH, p, n, np, nn, flags, None, &me, NOW)
    };
    let plain = RenameFlags::default();
    // A directory moves: the parents' link counts follow.
    ok(
        "move sub",
        rename(a.ino, b"sub", b.ino, b"sub", plain).await,
    )?;
    ensure!(
        nlink(m, a.ino).await? == 2 && nlink(m, b.ino).await? == 3,
        "nlink after moving a directory"
    );
    let up = ok("lookup ..", m.lookup(View::MAIN, sub.ino, b"..", &me).await)?;
    ensure!(
        up.ino == b.ino,
        "the moved directory's parent is {}",
        up.ino
    );
    // Into itself: EINVAL; over a non-empty directory: ENOTEMPTY.
    refused(
        "a into a/…",
        rename(root, b"b", sub.ino, b"x", plain).await,
        Refused::Invalid,
    )?;
    make(m, sub.ino, b"inner", NodeKind::File, &me).await?;
    refused(
        "over a non-empty directory",
        rename(root, b"a", b.ino, b"sub", plain).await,
        Refused::NotEmpty,
    )?;
    refused(
        "a directory over a file",
        rename(b.ino, b"sub", b.ino, b"g", plain).await,
        Refused::NotDir,
    )?;
    refused(
        "a file over a directory",
        rename(b.ino, b"g", root, b"a", plain).await,
        Refused::IsDir,
    )?;
    let noreplace = RenameFlags {
        no_replace: true,
        exchange: false,
    };
    refused(
        "NOREPLACE over a file",
        rename(a.ino, b"f", b.ino, b"g", noreplace).await,
        Refused::Exists,
    )?;
    // Replace: g's inode goes, f takes its name.
    let gone = ok("replace", rename(a.ino, b"f", b.ino, b"g", plain).await)?;
    ensure!(
        gone.is_some_and(|u| u.ino == g.ino && u.nlink == 0),
        "replace returned {gone:?}"
    );
    refused(
        "replaced inode",
        m.getattr(View::MAIN, g.ino).await.map(|_| ()),
        Refused::NotFound,
    )?;
    let now_g = ok("lookup g", m.lookup(View::MAIN, b.ino, b"g", &me).await)?;
    ensure!(now_g.ino == f.ino, "b/g is now f");
    // A link renamed over another link of the same inode: nothing.
    ok(
        "link",
        m.link(MAIN_BRANCH, f.ino, root, b"f2", &me, NOW).await,
    )?;
    ensure!(nlink(m, f.ino).await? == 2, "nlink after link");
    let none = ok("same inode", rename(root, b"f2", b.ino, b"g", plain).await)?;
    ensure!(none.is_none(), "{none:?}");
    ensure!(
        names(m, View::MAIN, root).await? == ["a", "b", "f2"] && nlink(m, f.ino).await? == 2,
        "rename between links of one inode changed something"
    );
    // Exchange swaps a file and a directory across parents.
    let exchange = RenameFlags {
        no_replace: false,
        exchange: true,
    };
    ok(
        "exchange",
        rename(root, b"f2", b.ino, b"sub", exchange).await,
    )?;
    let now_sub = ok("lookup f2", m.lookup(View::MAIN, root, b"f2", &me).await)?;
    ensure!(now_sub.ino == sub.ino, "exchange put sub at /f2");
    ensure!(
        nlink(m, root).await? == 5 && nlink(m, b.ino).await? == 2,
        "nlink after exchanging a directory with a file: root {} b {}",
        nlink(m, root).await?,
        nlink(m, b.ino).await?
    );
    refused(
        "exchange with nothing",
        rename(root, b"f2", root, b"missing", exchange).await,
        Refused::NotFound,
    )?;
    Ok(())
}

pub(super) async fn removal_and_orphans(m: &dyn MetaEngine) -> CheckResult {
    init(m).await?;
    let me = root_caller();
    let root = ok("root", m.root().await)?;
    let d = make(m, root, b"d", NodeKind::Dir, &me).await?;
    let f = make(m, d.ino, b"f", NodeKind::File, &me).await?;
    let rm = |p: Ino, n: &'static [u8], dir: bool, open: bool| {
        m.remove(MAIN_BRANCH, p, n, dir, open.then_some(HOLDER), &me, NOW)
    };
    refused(
        "rmdir non-empty",
        rm(root, b"d", true, false).await,
        Refused::NotEmpty,
    )?;
    refused(
        "unlink a directory",
        rm(root, b"d", false, false).await,
        Refused::IsDir,
    )?;
    refused(
        "rmdir a file",
        rm(d.ino, b"f", true, false).await,
        Refused::NotDir,
    )?;
    refused(
        "unlink missing",
        rm(d.ino, b"nope", false, false).await,
        Refused::NotFound,
    )?;
    // Write a page so the file has data to keep or drop.
    let lease = LeaseRequest::new(f.ino, "w", 1, TTL);
    ok("lease", m.acquire_lease(&lease).await)?;
    ok(
        "write",
        m.commit_writes(&WriteBatch::new(
            lease.clone(),
            vec![pw(0, 7)],
            u64::from(PS),
        ))
        .await,
    )?;
    ok("release", m.release_lease(MAIN_BRANCH, f.ino, "w").await)?;
    // Unlinked while open: an orphan, readable until forgotten.
    let u = ok("unlink open", rm(d.ino, b"f", false, true).await)?;
    ensure!(u.orphaned && u.nlink == 0, "{u:?}");
    let orphans = ok("orphans", m.orphans().await)?;
    ensure!(
        orphans.len() == 1 && orphans[0].ino == f.ino && orphans[0].holder == HOLDER,
        "orphans {orphans:?}"
    );
    ensure!(
        names(m, View::MAIN, d.ino).await?.is_empty(),
        "the name is gone"
    );
    let a = ok("getattr orphan", m.getattr(View::MAIN, f.ino).await)?;
    ensure!(a.nlink == 0 && a.size == u64::from(PS), "orphan attr {a:?}");
    let map = ok(
        "read orphan",
        m.read_map(View::MAIN, f.ino, 0, 1, PPE).await,
    )?;
    ensure!(map.dirty.len() == 1, "orphan data kept: {map:?}");
    ok("forget", m.forget_orphan(MAIN_BRANCH, f.ino, NOW).await)?;
    ensure!(
        ok("orphans", m.orphans().await)?.is_empty(),
        "a forgotten orphan is listed"
    );
    err_kind(
        "read after forget",
        m.read_map(View::MAIN, f.ino, 0, 1, PPE).await,
        MetaErrorKind::NotFound,
    )?;
    refused(
        "getattr after forget",
        m.getattr(View::MAIN, f.ino).await,
        Refused::NotFound,
    )?;
    // Not open: the data goes with the last link.
    let g = make(m, d.ino, b"g", NodeKind::File, &me).await?;
    ok(
        "link",
        m.link(MAIN_BRANCH, g.ino, root, b"g2", &me, NOW).await,
    )?;
    let u = ok("unlink one link", rm(d.ino, b"g", false, false).await)?;
    ensure!(u.nlink == 1 && !u.orphaned, "{u:?}");
    ok("read map", m.read_map(View::MAIN, g.ino, 0, 1, PPE).await)?;
    ok("unlink last", rm(root, b"g2", false, false).await)?;
    err_kind(
        "read after the last unlink",
        m.read_map(View::MAIN, g.ino, 0, 1, PPE).await,
        MetaErrorKind::NotFound,
    )?;
    ok("rmdir", rm(root, b"d", true, false).await)?;
    ensure!(nlink(m, root).await? == 2, "root nlink after rmdir");
    // An orphan of a branch deleted meanwhile is simply forgotten.
    let dev = ok("branch", m.create_branch("dev", View::MAIN, 20).await)?;
    let mut on_dev = node(root, b"o", NodeKind::File, 0o644, &me);
    on_dev.branch = dev.id;
    let o = ok("make on dev", m.make(&on_dev).await)?;
    let u = ok(
        "unlink open on dev",
        m.remove(dev.id, root, b"o", false, Some(HOLDER), &me, NOW)
            .await,
    )?;
    ensure!(u.orphaned, "{u:?}");
    ok("delete dev", m.delete_branch("dev", NOW).await)?;
    ok(
        "forget on a deleted branch",
        m.forget_orphan(dev.id, o.ino, NOW).await,
    )?;
    ensure!(
        ok("orphans", m.orphans().await)?.is_empty(),
        "the deleted branch's orphan is gone"
    );
    Ok(())
}

pub(super) async fn permissions(m: &dyn MetaEngine) -> CheckResult {
    init(m).await?;
    let me = root_caller();
    let alice = Caller::new(1000, 1000, &[]);
    let bob = Caller::new(1001, 1001, &[]);
    let root = ok("root", m.root().await)?;
    refused(
        "alice creates in a 0755 root",
        m.make(&node(root, b"x", NodeKind::File, 0o644, &alice))
            .await,
        Refused::Access,
    )?;
    let mut tmp = node(root, b"tmp", NodeKind::Dir, 0o1777, &me);
    tmp.mode = 0o1777;
    let tmp = ok("mkdir tmp", m.make(&tmp).await)?;
    let af = make(m, tmp.ino, b"a", NodeKind::File, &alice).await?;
    ensure!(
        af.uid == 1000 && af.gid == 1000,
        "owner of a new file: {af:?}"
    );
    refused(
        "bob removes alice's file from a sticky directory",
        m.remove(MAIN_BRANCH, tmp.ino, b"a", false, None, &bob, NOW)
            .await,
        Refused::NotPermitted,
    )?;
    refused(
        "bob chmods alice's file",
        m.setattr(MAIN_BRANCH, af.ino, &chmod(0o600), &bob, NOW)
            .await,
        Refused::NotPermitted,
    )?;
    let a = ok(
        "alice chmods",
        m.setattr(MAIN_BRANCH, af.ino, &chmod(0o4755), &alice, NOW + 5)
            .await,
    )?;
    ensure!(a.mode == 0o4755 && a.ctime_ns == NOW + 5, "{a:?}");
    let written = SetAttr {
        written: true,
        ..SetAttr::default()
    };
    let a = ok(
        "a write by alice",
        m.setattr(MAIN_BRANCH, af.ino, &written, &alice, NOW).await,
    )?;
    ensure!(
        a.mode == 0o755,
        "a write drops set-user-ID: {a:o}",
        a = a.mode
    );
    let times = SetAttr {
        mtime: Some(SetTime::At(7)),
        ..SetAttr::default()
    };
    refused(
        "bob sets alice's mtime",
        m.setattr(MAIN_BRANCH, af.ino, &times, &bob, NOW).await,
        Refused::NotPermitted,
    )?;
    let a = ok(
        "alice sets her mtime",
        m.setattr(MAIN_BRANCH, af.ino, &times, &alice, NOW).await,
    )?;
    ensure!(a.mtime_ns == 7, "{a:?}");
    let locked = make(m, root, b"locked", NodeKind::Dir, &me).await?;
    ok(
        "chmod 0700",
        m.setattr(MAIN_BRANCH, locked.ino, &chmod(0o700), &me, NOW)
            .await,
    )?;
    refused(
        "alice looks into a 0700 directory",
        m.lookup(View::MAIN, locked.ino, b"x", &alice).await,
        Refused::Access,
    )?;
    Ok(())
}

fn chmod(mode: u32) -> SetAttr {
    SetAttr {
        mode: Some(mode),
        ..SetAttr::default()
    }
}

pub(super) async fn xattrs(m: &dyn MetaEngine) -> CheckResult {
    init(m).await?;
    let me = root_caller();
    let root = ok("root", m.root().await)?;
    let f = make(m, root, b"f", NodeKind::File, &me).await?;
    let set = |name: &'static [u8], value: Option<&'static [u8]>, create: bool, replace: bool| {
        m.setxattr(MAIN_BRANCH, f.ino, name, value, create, replace, &me, NOW)
    };
    refused(
        "get absent",
        m.getxattr(View::MAIN, f.ino, b"user.a", &me).await,
        Refused::NoData,
    )?;
    refused(
        "replace absent",
        set(b"user.a", Some(b"1"), false, true).await,
        Refused::NoData,
    )?;
    ok("set", set(b"user.a", Some(b"1"), true, false).await)?;
    refused(
        "create existing",
        set(b"user.a", Some(b"2"), true, false).await,
        Refused::Exists,
    )?;
    ok("replace", set(b"user.a", Some(b"22"), false, true).await)?;
    ok("set empty", set(b"user.b", Some(b""), false, false).await)?;
    ok("trusted", set(b"trusted.t", Some(b"x"), false, false).await)?;
    let v = ok("get", m.getxattr(View::MAIN, f.ino, b"user.a", &me).await)?;
    ensure!(&v[..] == b"22", "value {v:?}");
    let e = ok(
        "get empty",
        m.getxattr(View::MAIN, f.ino, b"user.b", &me).await,
    )?;
    ensure!(e.is_empty(), "empty value {e:?}");
    let list = ok("list", m.listxattr(View::MAIN, f.ino, &me).await)?;
    ensure!(
        list == [&b"trusted.t"[..], b"user.a", b"user.b"],
        "list {list:?}"
    );
    let alice = Caller::new(1000, 1000, &[]);
    let list = ok(
        "list as alice",
        m.listxattr(View::MAIN, f.ino, &alice).await,
    )?;
    ensure!(
        list == [&b"user.a"[..], b"user.b"],
        "trusted hidden: {list:?}"
    );
    ok("remove", set(b"user.a", None, false, false).await)?;
    refused(
        "remove again",
        set(b"user.a", None, false, false).await,
        Refused::NoData,
    )?;
    // POSIX ACLs are kept (stored, not enforced); a default ACL belongs
    // to directories, and only the owner sets one.
    let acl: &[u8] = &[2, 0, 0, 0, 1, 0, 6, 0, 0xff, 0xff, 0xff, 0xff];
    ok(
        "set an access ACL",
        m.setxattr(
            MAIN_BRANCH,
            f.ino,
            crate::names::ACL_ACCESS,
            Some(acl),
            false,
            false,
            &me,
            NOW,
        )
        .await,
    )?;
    let got = ok(
        "get it",
        m.getxattr(View::MAIN, f.ino, crate::names::ACL_ACCESS, &me)
            .await,
    )?;
    ensure!(&got[..] == acl, "ACL {got:?}");
    refused(
        "a default ACL on a file",
        m.setxattr(
            MAIN_BRANCH,
            f.ino,
            crate::names::ACL_DEFAULT,
            Some(acl),
            false,
            false,
            &me,
            NOW,
        )
        .await,
        Refused::Access,
    )?;
    refused(
        "a malformed ACL",
        m.setxattr(
            MAIN_BRANCH,
            f.ino,
            crate::names::ACL_ACCESS,
            Some(&acl[..5]),
            false,
            false,
            &me,
            NOW,
        )
        .await,
        Refused::Invalid,
    )?;
    refused(
        "another system attribute",
        m.setxattr(
            MAIN_BRANCH,
            f.ino,
            b"system.other",
            Some(b"x"),
            false,
            false,
            &me,
            NOW,
        )
        .await,
        Refused::Unsupported,
    )?;
    refused(
        "a 64 KiB + 1 value",
        m.setxattr(
            MAIN_BRANCH,
            f.ino,
            b"user.big",
            Some(&[0u8; 65537][..]),
            false,
            false,
            &me,
            NOW,
        )
        .await,
        Refused::TooBig,
    )?;
    Ok(())
}

pub(super) async fn branches(m: &dyn MetaEngine) -> CheckResult {
    init(m).await?;
    let me = root_caller();
    let root = ok("root", m.root().await)?;
    let d = make(m, root, b"d", NodeKind::Dir, &me).await?;
    make(m, d.ino, b"f", NodeKind::File, &me).await?;
    let c1 = ok(
        "commit",
        m.commit(CommitRequest::new(MAIN_BRANCH, "one", 10)).await,
    )?
    .ok_or("commit made nothing after a mkdir")?;
    let dev = ok("branch", m.create_branch("dev", View::MAIN, 11).await)?;
    let mut on_dev = node(d.ino, b"dev-only", NodeKind::Dir, 0o755, &me);
    on_dev.branch = dev.id;
    ok("mkdir on dev", m.make(&on_dev).await)?;
    ok(
        "rename on dev",
        m.rename(
            dev.id,
            d.ino,
            b"f",
            root,
            b"moved",
            RenameFlags::default(),
            None,
            &me,
            NOW,
        )
        .await,
    )?;
    make(m, root, b"main-only", NodeKind::File, &me).await?;
    ensure!(
        names(m, View::Branch(dev.id), d.ino).await? == ["dev-only"]
            && names(m, View::Branch(dev.id), root).await? == ["d", "moved"],
        "dev's tree"
    );
    ensure!(
        names(m, View::MAIN, d.ino).await? == ["f"]
            && names(m, View::MAIN, root).await? == ["d", "main-only"],
        "main's tree"
    );
    ensure!(
        names(m, View::Commit(c1.id), root).await? == ["d"],
        "the commit's tree"
    );
    ensure!(
        nlink(m, d.ino).await? == 2
            && ok("getattr", m.getattr(View::Branch(dev.id), d.ino).await)?.nlink == 3,
        "nlink differs per branch"
    );
    // Deleting the branch folds its base back: main's tree stays whole.
    ok("delete dev", m.delete_branch("dev", NOW).await)?;
    ensure!(
        names(m, View::MAIN, root).await? == ["d", "main-only"]
            && names(m, View::MAIN, d.ino).await? == ["f"],
        "main after dev is gone"
    );
    let listed: Vec<String> = ok("list", m.list_files(View::MAIN, "d/").await)?
        .into_iter()
        .map(|f| f.name)
        .collect();
    ensure!(
        listed == ["d/f"],
        "list with a directory prefix: {listed:?}"
    );
    Ok(())
}

pub(super) async fn locks(m: &dyn MetaEngine) -> CheckResult {
    init(m).await?;
    let me = root_caller();
    let root = ok("root", m.root().await)?;
    let f = make(m, root, b"f", NodeKind::File, &me).await?;
    let lock = |holder: &str, owner: u64, start: u64, stop: u64, exclusive: bool| ByteLock {
        branch: MAIN_BRANCH,
        ino: f.ino,
        kind: LockKind::Posix,
        holder: holder.to_string(),
        owner,
        start,
        stop,
        exclusive,
    };
    // Shared locks of two owners coexist; an exclusive one conflicts.
    ensure!(
        ok(
            "a reads 0..100",
            m.set_lock(&lock("a", 1, 0, 100, false)).await
        )?
        .is_none(),
        "shared a"
    );
    ensure!(
        ok(
            "b reads 50..150",
            m.set_lock(&lock("b", 1, 50, 150, false)).await
        )?
        .is_none(),
        "shared b"
    );
    let c = ok(
        "b writes 90..95",
        m.set_lock(&lock("b", 1, 90, 95, true)).await,
    )?;
    ensure!(
        c.as_ref()
            .is_some_and(|c| c.holder == "a" && c.start == 0 && c.stop == 100),
        "conflict reported: {c:?}"
    );
    // An owner's own locks never conflict: a converts part of its range.
    ensure!(
        ok(
            "a writes 10..20",
            m.set_lock(&lock("a", 1, 10, 20, true)).await
        )?
        .is_none(),
        "own"
    );
    let t = ok("test", m.test_lock(&lock("b", 1, 15, 16, false)).await)?;
    ensure!(
        t.as_ref()
            .is_some_and(|t| t.exclusive && t.start == 10 && t.stop == 20),
        "the converted range is exclusive: {t:?}"
    );
    ensure!(
        ok(
            "test outside",
            m.test_lock(&lock("b", 1, 20, 30, false)).await
        )?
        .is_none(),
        "the rest stays shared"
    );
    // Unlocking the middle splits a's lock.
    ok(
        "a unlocks 10..20",
        m.unlock(&lock("a", 1, 10, 20, false)).await,
    )?;
    ensure!(
        ok(
            "b writes 10..20",
            m.set_lock(&lock("b", 2, 10, 20, true)).await
        )?
        .is_none(),
        "the hole a left is free"
    );
    ok("b unlocks", m.unlock(&lock("b", 2, 10, 20, false)).await)?;
    // A to-the-end lock, and a session's end frees everything it held.
    ensure!(
        ok(
            "b's to-end",
            m.set_lock(&lock("b", 3, 200, u64::MAX, true)).await
        )?
        .is_none(),
        "to the end"
    );
    let c = ok(
        "a at 1 GiB",
        m.set_lock(&lock("a", 1, 1 << 30, (1 << 30) + 1, false))
            .await,
    )?;
    ensure!(
        c.is_some_and(|c| c.stop == u64::MAX),
        "a to-the-end lock reaches any offset"
    );
    ok("b's session ends", m.release_locks("b", None, None).await)?;
    ensure!(
        ok(
            "a at 1 GiB again",
            m.set_lock(&lock("a", 1, 1 << 30, (1 << 30) + 1, true))
                .await
        )?
        .is_none(),
        "b's locks went with its session"
    );
    // flock is whole-file and separate from POSIX locks.
    let mut fl = lock("c", 9, 5, 6, true);
    fl.kind = LockKind::Flock;
    ensure!(
        ok("flock", m.set_lock(&fl).await)?.is_none(),
        "flock beside POSIX locks"
    );
    let mut other = fl.clone();
    other.owner = 10;
    other.exclusive = false;
    ensure!(
        ok("second flock", m.set_lock(&other).await)?.is_some(),
        "flock is whole-file"
    );
    err_kind(
        "an empty range",
        m.set_lock(&lock("a", 1, 5, 5, false)).await,
        MetaErrorKind::Refused(Refused::Invalid),
    )?;
    Ok(())
}

/// Tree changes of an instance that defers their durability are
/// committed at once and wait for a barrier, which a durable write also
/// is; refused changes leave nothing waiting.
pub(super) async fn deferred_durability(m: &dyn MetaEngine) -> CheckResult {
    init(m).await?;
    let root = ok("root", m.root().await)?;
    let me = root_caller();
    make(m, root, b"durable", NodeKind::Dir, &me).await?;
    ensure!(
        !m.durability_pending(),
        "a change waits for a barrier before deferral was asked for"
    );
    ok("barrier with nothing waiting", m.barrier().await)?;

    m.defer_durability(true);
    let d = make(m, root, b"deferred", NodeKind::Dir, &me).await?;
    ensure!(
        m.durability_pending(),
        "a deferred make waits for no barrier"
    );
    let seen = ok("lookup", m.lookup(View::MAIN, root, b"deferred", &me).await)?;
    ensure!(seen.ino == d.ino, "a deferred make is not visible at once");
    ok("barrier", m.barrier().await)?;
    ensure!(!m.durability_pending(), "a barrier left changes waiting");

    refused(
        "make over an existing name",
        m.make(&node(root, b"deferred", NodeKind::Dir, 0o755, &me))
            .await,
        Refused::Exists,
    )?;
    ensure!(
        !m.durability_pending(),
        "a refused change waits for a barrier"
    );

    ok(
        "rename",
        m.rename(
            MAIN_BRANCH,
            root,
            b"deferred",
            root,
            b"renamed",
            RenameFlags::default(),
            None,
            &me,
            NOW,
        )
        .await,
    )?;
    ensure!(
        m.durability_pending(),
        "a deferred rename waits for no barrier"
    );
    // Any durable write of the instance is a barrier.
    new_file(m, "data", HOLDER, NOW).await?;
    ensure!(
        !m.durability_pending(),
        "a durable write did not make the deferred rename durable"
    );
    ok(
        "remove",
        m.remove(MAIN_BRANCH, root, b"renamed", true, None, &me, NOW)
            .await,
    )?;
    ensure!(
        m.durability_pending(),
        "a deferred rmdir waits for no barrier"
    );
    ok("barrier", m.barrier().await)?;
    let names = names(m, View::MAIN, root).await?;
    ensure!(
        names == ["data", "durable"],
        "after deferred changes the root holds {names:?}"
    );

    m.defer_durability(false);
    make(m, root, b"again", NodeKind::Dir, &me).await?;
    ensure!(
        !m.durability_pending(),
        "a change waits for a barrier after deferral was turned off"
    );
    Ok(())
}
