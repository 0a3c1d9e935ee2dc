//! A volume's store: only durable stores are accepted, and a store that
//! vanished (unmounted disk, moved directory, deleted bucket, wrong URL) is
//! an error naming it — never silently recreated or adopted. Real local
//! directories and a real S3 server (SeaweedFS).

mod common;

use std::path::Path;
use std::process::Command;

use common::{fails, ok, s};

fn write(dir: &Path, name: &str, len: usize, seed: u64) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, common::random(len, seed)).unwrap();
    p
}

/// Every file under `dir`, recursively (relative paths, sorted).
fn tree(dir: &Path) -> Vec<String> {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries {
            let p = e.unwrap().path();
            out.push(p.strip_prefix(base).unwrap().display().to_string());
            if p.is_dir() {
                walk(base, &p, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

#[test]
fn caches_are_refused_as_a_volumes_store() {
    let dir = tempfile::tempdir().unwrap();
    let v = dir.path().join("v");
    let cache = format!("diskcache://{}/dc?capacity=3000000", s(dir.path()));
    // The command: accepted before, and both files lost after.
    for store in [cache.as_str(), "lru://?capacity=3000000", "memory://"] {
        let err = fails(&["init", s(&v), "--store", store]);
        assert!(
            err.contains("cannot be a volume's store") && err.contains("--cache"),
            "{store}: {err}"
        );
        assert!(!v.exists(), "a refused init left {} behind", v.display());
    }
    // The remedy the message gives works: the cache in front of a directory.
    ok(&["init", s(&v), "--cache", &cache]);
    let a = write(dir.path(), "a.bin", 3_000_000, 1);
    let b = write(dir.path(), "b.bin", 3_000_000, 2);
    ok(&["file", "put", s(&a), s(&v), "a"]);
    ok(&["file", "put", s(&b), s(&v), "b"]);
    let out = dir.path().join("a.out");
    ok(&["file", "get", s(&v), "a", s(&out)]);
    assert_eq!(std::fs::read(&out).unwrap(), std::fs::read(&a).unwrap());
    ok(&["fsck", s(&v)]);

    // A volume file edited to name a cache is refused at open too.
    let vf = v.join("fsx-volume.json");
    let text = std::fs::read_to_string(&vf).unwrap();
    let edited = text.replace("\"data\"", &format!("{cache:?}"));
    assert_ne!(text, edited);
    std::fs::write(&vf, edited).unwrap();
    let err = fails(&["file", "ls", s(&v)]);
    assert!(err.contains("cannot be a volume's store"), "{err}");
}

#[test]
fn a_vanished_store_directory_is_an_error_not_recreated() {
    let dir = tempfile::tempdir().unwrap();
    let v = dir.path().join("v");
    let store = dir.path().join("mnt");
    ok(&["init", s(&v), "--store", s(&store)]);
    let a = write(dir.path(), "a.bin", 100_000, 1);
    ok(&["file", "put", s(&a), s(&v), "a"]);

    // The disk goes away: its mount point is gone...
    let away = dir.path().join("away");
    std::fs::rename(&store, &away).unwrap();
    for args in [
        vec!["file", "put", s(&a), s(&v), "b"],
        vec!["file", "ls", s(&v)],
        vec!["fsck", s(&v)],
        vec!["gc", s(&v)],
    ] {
        let err = fails(&args);
        assert!(
            err.contains(s(&store)) && err.contains("does not exist"),
            "{args:?}: {err}"
        );
        assert!(!store.exists(), "fsx {args:?} recreated the store");
    }
    // ...or is an empty directory (an unmounted tmpfs's mount point).
    std::fs::create_dir(&store).unwrap();
    for args in [
        vec!["file", "put", s(&a), s(&v), "b"],
        vec!["file", "ls", s(&v)],
    ] {
        let err = fails(&args);
        assert!(err.contains("holds no fsx data store"), "{args:?}: {err}");
        assert!(
            tree(&store).is_empty(),
            "fsx {args:?} wrote {:?}",
            tree(&store)
        );
    }
    // ...or holds an empty store of the same layout but no volume marker.
    std::fs::create_dir(store.join("objects")).unwrap();
    let err = fails(&["file", "put", s(&a), s(&v), "b"]);
    assert!(err.contains("holds no volume marker"), "{err}");
    assert_eq!(
        tree(&store),
        ["objects"],
        "nothing written to the wrong store"
    );

    // The disk comes back: everything is there.
    std::fs::remove_dir_all(&store).unwrap();
    std::fs::rename(&away, &store).unwrap();
    let out = dir.path().join("a.out");
    ok(&["file", "get", s(&v), "a", s(&out)]);
    assert_eq!(std::fs::read(&out).unwrap(), std::fs::read(&a).unwrap());
    ok(&["fsck", s(&v)]);
}

#[test]
fn another_volumes_store_is_refused_and_its_marker_kept() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("shared");
    ok(&["init", s(&dir.path().join("one")), "--store", s(&store)]);
    let marker = tree(&store)
        .into_iter()
        .map(|p| store.join(p))
        .find(|p| p.is_file())
        .expect("the store holds its marker");
    let before = std::fs::read(&marker).unwrap();
    let err = fails(&["init", s(&dir.path().join("two")), "--store", s(&store)]);
    assert!(err.contains("already belongs to volume"), "{err}");
    assert_eq!(std::fs::read(&marker).unwrap(), before);
    // Pointing an existing volume at it is refused too, and changes nothing.
    ok(&["init", s(&dir.path().join("three"))]);
    let vf = dir.path().join("three").join("fsx-volume.json");
    let text = std::fs::read_to_string(&vf).unwrap();
    std::fs::write(&vf, text.replace("\"data\"", &format!("{:?}", s(&store)))).unwrap();
    let err = fails(&["file", "ls", s(&dir.path().join("three"))]);
    assert!(err.contains("belongs to volume"), "{err}");
    assert_eq!(std::fs::read(&marker).unwrap(), before);
}

#[test]
fn a_vanished_bucket_or_prefix_is_an_error() {
    let s3 = fsx_testkit::S3Fixture::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let v = dir.path().join("v");
    let url = s3.url().unwrap();
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_fsx"))
            .args(args)
            .env("AWS_ACCESS_KEY_ID", s3.access_key())
            .env("AWS_SECRET_ACCESS_KEY", s3.secret_key())
            .output()
            .unwrap()
    };
    let out = run(&["init", s(&v), "--store", &url]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let a = write(dir.path(), "a.bin", 50_000, 1);
    let out = run(&["file", "put", s(&a), s(&v), "a"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The store's objects are gone (a deleted bucket, an emptied prefix, a
    // wrong URL all look alike): refused, and the marker is not rewritten.
    let parsed = url::Url::parse(&url).unwrap();
    let bucket = parsed.host_str().unwrap();
    let gone = url.replacen(bucket, &format!("{bucket}/elsewhere"), 1);
    let vf = v.join("fsx-volume.json");
    let text = std::fs::read_to_string(&vf).unwrap();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    let mut edited = json.clone();
    edited["store"] = serde_json::Value::String(gone.clone());
    std::fs::write(&vf, serde_json::to_vec(&edited).unwrap()).unwrap();
    for args in [
        vec!["file", "put", s(&a), s(&v), "b"],
        vec!["file", "ls", s(&v)],
    ] {
        let out = run(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains("holds no volume marker"), "{args:?}: {err}");
    }
    let out = run(&["store", "check", &gone]);
    assert!(out.status.success(), "the prefix was left empty");
    // A bucket that does not exist.
    let missing = url.replacen(bucket, "fsx-no-such-bucket", 1);
    edited["store"] = serde_json::Value::String(missing);
    std::fs::write(&vf, serde_json::to_vec(&edited).unwrap()).unwrap();
    let out = run(&["file", "ls", s(&v)]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Back to the right URL: everything is there.
    std::fs::write(&vf, text).unwrap();
    let dst = dir.path().join("a.out");
    let out = run(&["file", "get", s(&v), "a", s(&dst)]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(std::fs::read(&dst).unwrap(), std::fs::read(&a).unwrap());
}

#[test]
fn gc_deletes_orphans_only_past_the_orphan_grace() {
    let dir = tempfile::tempdir().unwrap();
    let v = dir.path().join("v");
    let store = dir.path().join("store");
    ok(&["init", s(&v), "--store", s(&store)]);
    let a = write(dir.path(), "a.bin", 100_000, 1);
    ok(&["file", "put", s(&a), s(&v), "a"]);
    // An object no record names, just written (a writer this run cannot
    // see, a restore in progress): it must survive gc's default grace.
    let orphan = fsx_format::content_key(b"not an extent of this volume");
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let b = fsx_store::local::LocalBackend::open_existing(&store).unwrap();
        let key = fsx_store::ObjectKey::new(&orphan).unwrap();
        fsx_store::ExtentBackend::put(&b, &key, bytes::Bytes::from_static(b"x"))
            .await
            .unwrap();
    });
    let out = ok(&["gc", s(&v)]);
    assert!(
        out.contains("0 orphans") && out.contains("kept 1 orphan"),
        "{out}"
    );
    let report = common::fsx(&["fsck", s(&v)]);
    assert!(
        String::from_utf8_lossy(&report.stdout).contains(&orphan),
        "fsck still reports it"
    );
    // Two hours later (by the store's clock) it is old enough.
    let old = std::time::SystemTime::now() - std::time::Duration::from_secs(2 * 3600);
    for p in tree(&store) {
        let p = store.join(p);
        if p.is_file() {
            std::fs::File::options()
                .write(true)
                .open(&p)
                .unwrap()
                .set_modified(old)
                .unwrap();
        }
    }
    let out = ok(&["gc", s(&v)]);
    assert!(out.contains("1 orphans"), "{out}");
    ok(&["fsck", s(&v)]);
    let dst = dir.path().join("a.out");
    ok(&["file", "get", s(&v), "a", s(&dst)]);
    assert_eq!(std::fs::read(&dst).unwrap(), std::fs::read(&a).unwrap());
    // --orphan-grace 0s takes even a fresh one.
    rt.block_on(async {
        let b = fsx_store::local::LocalBackend::open_existing(&store).unwrap();
        let key = fsx_store::ObjectKey::new(&orphan).unwrap();
        fsx_store::ExtentBackend::put(&b, &key, bytes::Bytes::from_static(b"x"))
            .await
            .unwrap();
    });
    let out = ok(&["gc", s(&v), "--orphan-grace", "0s"]);
    assert!(out.contains("1 orphans"), "{out}");
}

#[test]
fn a_refused_init_releases_the_store_it_claimed() {
    let dir = tempfile::tempdir().unwrap();
    let one = dir.path().join("one");
    ok(&["init", s(&one)]);
    // The metadata already holds volume one: the init is refused after it
    // claimed the new store, and must give the claim back.
    let store = dir.path().join("store");
    let meta = format!("sqlite://{}", s(&one.join("meta.db")));
    let err = fails(&[
        "init",
        s(&dir.path().join("two")),
        "--meta",
        &meta,
        "--store",
        s(&store),
    ]);
    assert!(err.contains("already holds"), "{err}");
    assert!(
        tree(&store).iter().all(|p| !store.join(p).is_file()),
        "the refused init left {:?}",
        tree(&store)
    );
    ok(&["init", s(&dir.path().join("three")), "--store", s(&store)]);
    ok(&["fsck", s(&one)]);
}
