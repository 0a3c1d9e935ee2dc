//! The local directory backend and the disk cache: conformance on a real
//! file system, plus layout, crash-leftover and restart behaviour.

mod common;

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use common::assert_conformance;
use fsx_store::cache::DiskCache;
use fsx_store::local::LocalBackend;
use fsx_store::{ErrorKind, ExtentBackend, ExtentBackendExt, ObjectKey, open_backend};
use fsx_testkit::temp_dir;

fn key(s: &str) -> ObjectKey {
    ObjectKey::new(s).unwrap()
}

/// Every file under `dir`, recursively.
fn files_under(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(files_under(&path));
        } else {
            out.push(path);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_passes_conformance() {
    let dir = temp_dir().unwrap();
    let backend = LocalBackend::open(dir.path()).unwrap();
    let reports = assert_conformance(Arc::new(backend.clone()), "conf/").await;
    common::assert_creates_if_absent(&reports);
    common::assert_lists_write_times(&backend, "aged/").await;
    let left = files_under(dir.path());
    assert!(
        left.is_empty(),
        "files left after the suite cleaned up: {left:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_opens_from_file_url_and_plain_path() {
    let dir = temp_dir().unwrap();
    let url = format!("file://{}", dir.path().display());
    let a = open_backend(&url).unwrap();
    a.put(&key("x/y"), Bytes::from_static(b"hello"))
        .await
        .unwrap();
    let b = open_backend(dir.path().to_str().unwrap()).unwrap();
    assert_eq!(
        b.get(&key("x/y")).await.unwrap(),
        Bytes::from_static(b"hello")
    );
    assert!(b.to_string().starts_with("local directory"), "{b}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_fans_out_and_leaves_no_temp_files() {
    let dir = temp_dir().unwrap();
    let backend = LocalBackend::open(dir.path()).unwrap();
    let mut keys = Vec::new();
    for i in 0..300 {
        let value = Bytes::from(format!("extent {i}"));
        let k = ObjectKey::for_content(&value);
        backend.put(&k, value).await.unwrap();
        keys.push(k);
    }
    let objects = dir.path().join("objects");
    let files = files_under(&objects);
    assert_eq!(
        files.len(),
        300,
        "exactly one file per object, no temp files"
    );
    let mut leaf_dirs = std::collections::BTreeSet::new();
    for file in &files {
        let rel = file.strip_prefix(&objects).unwrap();
        let parts: Vec<&str> = rel.iter().map(|p| p.to_str().unwrap()).collect();
        assert_eq!(parts.len(), 3, "objects/<aa>/<bb>/<name>: {rel:?}");
        assert!(parts[0].len() == 2 && parts[1].len() == 2, "{rel:?}");
        assert!(parts[2].starts_with("extent%2Fext-"), "{rel:?}");
        assert!(!parts[2].starts_with('.'), "temp file left: {rel:?}");
        leaf_dirs.insert((parts[0].to_owned(), parts[1].to_owned()));
    }
    // 300 random hashes over 65,536 leaves: nearly all distinct.
    assert!(
        leaf_dirs.len() > 280,
        "fan-out too narrow: {} leaf dirs",
        leaf_dirs.len()
    );
    assert_eq!(
        backend
            .path_for(&keys[0])
            .strip_prefix(dir.path())
            .unwrap()
            .iter()
            .count(),
        4
    );
    let listed = backend.list_all("extent/").await.unwrap();
    assert_eq!(listed.len(), 300);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_long_keys_use_chunk_directories_and_clean_them_up() {
    let dir = temp_dir().unwrap();
    let backend = LocalBackend::open(dir.path()).unwrap();
    // 170 three-byte characters: 510 bytes, 1530 encoded bytes.
    let long = key(&"ж".repeat(170));
    backend
        .put(&long, Bytes::from_static(b"deep"))
        .await
        .unwrap();
    let path = backend.path_for(&long);
    let rel = path.strip_prefix(dir.path().join("objects")).unwrap();
    assert!(rel.iter().count() > 3, "{rel:?}");
    assert!(
        rel.iter().all(|c| c.len() <= 201),
        "name over the chunk size in {rel:?}"
    );
    assert_eq!(backend.list_all("").await.unwrap()[0].key, long);
    backend.delete(&long).await.unwrap();
    let leaf = dir
        .path()
        .join("objects")
        .join(rel.iter().next().unwrap())
        .join(rel.iter().nth(1).unwrap());
    assert_eq!(
        std::fs::read_dir(&leaf).unwrap().count(),
        0,
        "chunk directories left behind"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_ignores_and_removes_crash_leftovers() {
    let dir = temp_dir().unwrap();
    let backend = LocalBackend::open(dir.path()).unwrap();
    let k = key("a/b");
    backend.put(&k, Bytes::from_static(b"v")).await.unwrap();
    // What a crash between create and rename leaves behind.
    let leftover = backend.path_for(&k).with_file_name(".tmp-999-0");
    std::fs::write(&leftover, b"partial").unwrap();
    let listed = backend.list_all("").await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(backend.remove_temp_files().await.unwrap(), 1);
    assert!(!leftover.exists());
    assert_eq!(backend.get(&k).await.unwrap(), Bytes::from_static(b"v"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_data_survives_reopen() {
    let dir = temp_dir().unwrap();
    let k = key("persist/me");
    LocalBackend::open(dir.path())
        .unwrap()
        .put(&k, Bytes::from_static(b"still here"))
        .await
        .unwrap();
    let reopened = LocalBackend::open(dir.path()).unwrap();
    assert_eq!(
        reopened.get(&k).await.unwrap(),
        Bytes::from_static(b"still here")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disk_cache_passes_conformance() {
    let dir = temp_dir().unwrap();
    let cache = DiskCache::open(dir.path(), 64 << 20).unwrap();
    assert_conformance(Arc::new(cache), "conf/").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disk_cache_survives_reopen_and_rejects_corruption() {
    let dir = temp_dir().unwrap();
    let content = Bytes::from(vec![5u8; 5000]);
    let content_key = ObjectKey::for_content(&content);
    let plain_key = key("meta/plain");
    {
        let cache = DiskCache::open(dir.path(), 1 << 20).unwrap();
        cache.put(&content_key, content.clone()).await.unwrap();
        cache
            .put(&plain_key, Bytes::from_static(b"plain bytes"))
            .await
            .unwrap();
    }
    let cache = DiskCache::open(dir.path(), 1 << 20).unwrap();
    assert_eq!(cache.used_bytes(), 5000 + 11, "index rebuilt from disk");
    assert_eq!(cache.get(&content_key).await.unwrap(), content);
    assert_eq!(
        cache.get_range(&plain_key, 6..100).await.unwrap(),
        Bytes::from_static(b"bytes")
    );

    // Flip one payload byte of each file behind the cache's back.
    for k in [&content_key, &plain_key] {
        let path = cache.path_for(k);
        let mut raw = std::fs::read(&path).unwrap();
        let last = raw.len() - 1;
        raw[last] ^= 0xff;
        std::fs::write(&path, raw).unwrap();
        let err = cache.get(k).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Corrupt, "{k}: {err}");
        assert!(!path.exists(), "a corrupt entry must be dropped");
        assert_eq!(cache.get(k).await.unwrap_err().kind(), ErrorKind::NotFound);
    }
    assert_eq!(cache.corrupt_dropped(), 2);
    assert_eq!(cache.used_bytes(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disk_cache_content_key_must_match_payload() {
    let dir = temp_dir().unwrap();
    let cache = DiskCache::open(dir.path(), 1 << 20).unwrap();
    // A content key over the wrong bytes: the checksum is self-consistent,
    // but the key promises other content.
    let k = ObjectKey::for_content(b"what the key promises");
    cache
        .put(&k, Bytes::from_static(b"something else"))
        .await
        .unwrap();
    assert_eq!(cache.get(&k).await.unwrap_err().kind(), ErrorKind::Corrupt);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disk_cache_evicts_by_bytes_and_on_reopen_with_less_room() {
    let dir = temp_dir().unwrap();
    let cache = DiskCache::open(dir.path(), 10_000).unwrap();
    for name in ["a", "b", "c"] {
        cache
            .put(&key(name), Bytes::from(vec![1u8; 3000]))
            .await
            .unwrap();
    }
    cache.get(&key("a")).await.unwrap();
    cache
        .put(&key("d"), Bytes::from(vec![1u8; 3000]))
        .await
        .unwrap();
    assert_eq!(cache.evictions(), 1);
    assert!(!cache.exists(&key("b")).await.unwrap());
    assert!(
        !cache.path_for(&key("b")).exists(),
        "evicted file removed from disk"
    );
    assert!(cache.used_bytes() <= 10_000);
    drop(cache);
    let smaller = DiskCache::open(dir.path(), 6_000).unwrap();
    assert!(smaller.used_bytes() <= 6_000);
    assert_eq!(smaller.list_all("").await.unwrap().len(), 2);
}

/// Whether `path` carries the local store's seal attribute.
fn has_seal(path: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
    let mut buf = [0u8; 64];
    // SAFETY: both strings are NUL-terminated; `buf` has the length given.
    let n = unsafe {
        libc::getxattr(
            c.as_ptr(),
            c"user.fsx.xxh3".as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    n == 16
}

fn remove_seal(path: &Path) {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
    // SAFETY: both strings are NUL-terminated.
    let r = unsafe { libc::removexattr(c.as_ptr(), c"user.fsx.xxh3".as_ptr()) };
    assert_eq!(r, 0, "{}", std::io::Error::last_os_error());
}

/// Overwrites byte `at` of the file in place (same inode, attributes kept).
fn flip_in_place(path: &Path, at: u64) {
    use std::os::unix::fs::FileExt;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    let mut b = [0u8; 1];
    f.read_exact_at(&mut b, at).unwrap();
    b[0] ^= 0x01;
    f.write_all_at(&b, at).unwrap();
}

/// The store claims `checks_content`, so readers skip their own SHA-256:
/// every way a local copy can go bad must still fail its get as `Corrupt`,
/// with the seal and, for files without one, with the key's own hash.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_checks_its_own_copies() {
    let dir = temp_dir().unwrap();
    let store = LocalBackend::open(dir.path()).unwrap();
    assert!(store.capabilities().checks_content);
    let a = Bytes::from((0..300_000u32).map(|i| (i * 7) as u8).collect::<Vec<_>>());
    let b = Bytes::from(vec![9u8; 70_000]);
    let (ka, kb) = (ObjectKey::for_content(&a), ObjectKey::for_content(&b));
    store.put(&ka, a.clone()).await.unwrap();
    assert!(store.put_if_absent(&kb, b.clone()).await.unwrap());
    let (pa, pb) = (store.path_for(&ka), store.path_for(&kb));
    assert!(
        has_seal(&pa) && has_seal(&pb),
        "this file system keeps user xattrs"
    );
    assert_eq!(store.get(&ka).await.unwrap(), a);
    assert_eq!(store.get(&kb).await.unwrap(), b);

    // One bit flipped in place, anywhere: the seal no longer matches.
    for at in [0u64, 4096, 299_999] {
        flip_in_place(&pa, at);
        let err = store.get(&ka).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Corrupt, "byte {at}: {err}");
        flip_in_place(&pa, at);
        assert_eq!(store.get(&ka).await.unwrap(), a, "restored");
    }

    // Another key's intact file, seal and all, moved over this name: the
    // seal is bound to the key it was written under.
    {
        // Sealed copy of `b` under `a`'s name.
        let sealed_b = dir.path().join("sealed-b");
        std::fs::hard_link(&pb, &sealed_b).unwrap();
        std::fs::rename(&sealed_b, &pa).unwrap();
        let err = store.get(&ka).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Corrupt, "{err}");
        store.put(&ka, a.clone()).await.unwrap();
    }

    // Without a seal (written before seals, or a file system without user
    // xattrs) the key's own hash decides.
    remove_seal(&pa);
    assert_eq!(store.get(&ka).await.unwrap(), a);
    flip_in_place(&pa, 123);
    assert_eq!(store.get(&ka).await.unwrap_err().kind(), ErrorKind::Corrupt);

    // Keys that name no content are not checked.
    let plain = key("meta/plain");
    store
        .put(&plain, Bytes::from_static(b"plain"))
        .await
        .unwrap();
    assert!(!has_seal(&store.path_for(&plain)));
    flip_in_place(&store.path_for(&plain), 0);
    assert_eq!(
        store.get(&plain).await.unwrap(),
        Bytes::from_static(b"qlain")
    );
}
