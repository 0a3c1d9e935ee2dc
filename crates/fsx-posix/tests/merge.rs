//! Merging branches per path: directories, symlinks and files changed on
//! one side are taken, whatever the other side did elsewhere; an entry
//! changed on both sides is a conflict; link counts stay right.

use std::path::Path;
use std::sync::Arc;

use fsx_engine::{MergeOutcome, MergeStrategy, SystemEnv, Volume, VolumeOptions};
use fsx_meta::VolumeConfig;
use fsx_meta::sqlite::SqliteMeta;
use fsx_posix::{Caller, Fs, Ino, NodeKind, OpenFlags, RenameFlags};
use fsx_store::local::LocalBackend;

async fn create(dir: &Path) -> Volume {
    Volume::create(
        Arc::new(SqliteMeta::open(dir.join("meta.db"), true).unwrap()),
        Arc::new(LocalBackend::open(dir.join("data")).unwrap()),
        Arc::new(SystemEnv::new()),
        VolumeConfig::new("merge-test", 256 * 1024, "data", 1),
        VolumeOptions::default(),
    )
    .await
    .unwrap()
}

/// `path` → (kind, nlink, contents or target) of every inode of `fs`.
async fn tree(fs: &Fs) -> Vec<(String, NodeKind, u32, Vec<u8>)> {
    let me = Caller::root();
    let mut out = Vec::new();
    let mut todo = vec![(fs.root(), String::new())];
    while let Some((dir, prefix)) = todo.pop() {
        for e in fs.readdir(dir, None, 1000).await.unwrap() {
            let path = format!("{prefix}{}", String::from_utf8_lossy(&e.name));
            let a = fs.getattr(e.ino).await.unwrap();
            let data = match a.kind {
                NodeKind::Dir => {
                    todo.push((e.ino, format!("{path}/")));
                    Vec::new()
                }
                NodeKind::Symlink => fs.readlink(e.ino).await.unwrap().to_vec(),
                _ => {
                    let fh = fs.open(e.ino, OpenFlags::read_only(), &me).await.unwrap();
                    let d = fs.read(fh, 0, 1 << 20).await.unwrap();
                    fs.release(fh).await.unwrap();
                    d
                }
            };
            out.push((path, a.kind, a.nlink, data));
        }
    }
    out.sort();
    out
}

async fn put(fs: &Fs, dir: Ino, name: &[u8], data: &[u8]) {
    let (_, fh) = fs
        .create(
            dir,
            name,
            0o644,
            OpenFlags::read_write(),
            true,
            &Caller::root(),
        )
        .await
        .unwrap();
    fs.write(fh, 0, data).await.unwrap();
    fs.release(fh).await.unwrap();
}

async fn lookup(fs: &Fs, dir: Ino, name: &[u8]) -> Ino {
    fs.lookup(dir, name, &Caller::root()).await.unwrap().ino
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn directories_and_files_changed_on_one_side_are_taken() {
    let dir = tempfile::tempdir().unwrap();
    let volume = create(dir.path()).await;
    let me = Caller::root();
    let main = Fs::new(volume.clone()).await.unwrap();
    let d = main.mkdir(main.root(), b"d", 0o755, &me).await.unwrap().ino;
    main.mkdir(main.root(), b"gone", 0o755, &me).await.unwrap();
    put(&main, d, b"f", b"base").await;
    volume.commit("base").await.unwrap();
    volume.create_branch("dev").await.unwrap();
    let dev = Fs::new(volume.checkout("dev").await.unwrap())
        .await
        .unwrap();
    // dev: renames a directory, makes a tree, a symlink, removes one.
    dev.rename(
        dev.root(),
        b"d",
        dev.root(),
        b"d2",
        RenameFlags::default(),
        &me,
    )
    .await
    .unwrap();
    let new = dev.mkdir(dev.root(), b"new", 0o700, &me).await.unwrap().ino;
    let deep = dev.mkdir(new, b"deep", 0o755, &me).await.unwrap().ino;
    put(&dev, deep, b"g", b"from dev").await;
    dev.symlink(dev.root(), b"s", b"d2/f", &me).await.unwrap();
    dev.rmdir(dev.root(), b"gone", &me).await.unwrap();
    // main: a new file in the directory dev renamed, and its own file.
    put(&main, d, b"h", b"from main").await;
    put(&main, main.root(), b"top", b"main only").await;
    let out = main
        .volume()
        .merge(
            fsx_meta::View::Branch(dev.volume().branch_id().unwrap()),
            MergeStrategy::Fail,
        )
        .await
        .unwrap();
    assert!(matches!(out, MergeOutcome::Merged { .. }), "{out:?}");
    let merged = tree(&Fs::new(volume.clone()).await.unwrap()).await;
    let want: Vec<(String, NodeKind, u32, Vec<u8>)> = vec![
        ("d2".into(), NodeKind::Dir, 2, vec![]),
        ("d2/f".into(), NodeKind::File, 1, b"base".to_vec()),
        ("d2/h".into(), NodeKind::File, 1, b"from main".to_vec()),
        ("new".into(), NodeKind::Dir, 3, vec![]),
        ("new/deep".into(), NodeKind::Dir, 2, vec![]),
        ("new/deep/g".into(), NodeKind::File, 1, b"from dev".to_vec()),
        ("s".into(), NodeKind::Symlink, 1, b"d2/f".to_vec()),
        ("top".into(), NodeKind::File, 1, b"main only".to_vec()),
    ];
    assert_eq!(merged, want);
    let root = main.getattr(main.root()).await.unwrap();
    assert_eq!(root.nlink, 4, "root: itself, `.`, d2 and new");
    assert_eq!(
        main.getattr(lookup(&main, main.root(), b"new").await)
            .await
            .unwrap()
            .mode,
        0o700
    );
    assert!(
        volume
            .fsck(&fsx_engine::NoProgress)
            .await
            .unwrap()
            .is_clean()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_entry_changed_on_both_sides_is_a_conflict() {
    let dir = tempfile::tempdir().unwrap();
    let volume = create(dir.path()).await;
    let me = Caller::root();
    let main = Fs::new(volume.clone()).await.unwrap();
    main.mkdir(main.root(), b"d", 0o755, &me).await.unwrap();
    volume.commit("base").await.unwrap();
    volume.create_branch("dev").await.unwrap();
    let dev = Fs::new(volume.checkout("dev").await.unwrap())
        .await
        .unwrap();
    dev.rename(
        dev.root(),
        b"d",
        dev.root(),
        b"x",
        RenameFlags::default(),
        &me,
    )
    .await
    .unwrap();
    main.rename(
        main.root(),
        b"d",
        main.root(),
        b"y",
        RenameFlags::default(),
        &me,
    )
    .await
    .unwrap();
    let source = fsx_meta::View::Branch(dev.volume().branch_id().unwrap());
    let out = volume.merge(source, MergeStrategy::Fail).await.unwrap();
    match out {
        MergeOutcome::Conflicts(c) => assert_eq!(c, ["x/"]),
        other => panic!("expected a conflict, got {other:?}"),
    }
    let before = tree(&main).await;
    assert_eq!(before[0].0, "y", "a refused merge applies nothing");
    // Theirs: dev's name wins.
    let out = volume.merge(source, MergeStrategy::Theirs).await.unwrap();
    assert!(matches!(out, MergeOutcome::Merged { .. }), "{out:?}");
    let after = tree(&Fs::new(volume.clone()).await.unwrap()).await;
    assert_eq!(
        after.iter().map(|t| t.0.as_str()).collect::<Vec<_>>(),
        ["x"]
    );
}
