//! The volume commands as an operator runs them on the embedded default:
//! init, put/get round trips, ls/mv/rm/stat, fsck and gc exit codes, and
//! clear errors that change nothing.

mod common;

use common::*;

use std::path::Path;
use std::process::Command;

#[test]
fn init_put_get_round_trip_and_maintenance() {
    let dir = tempfile::tempdir().unwrap();
    let vol = dir.path().join("vol");
    let out = ok(&["init", s(&vol), "--extent-size", "256K"]);
    assert!(out.contains("extent size: 256 KiB"), "{out}");

    let src = dir.path().join("src.bin");
    let data = random_file(&src, 3_000_000, 0x2545_f491_4f6c_dd1d);
    ok(&[
        "file",
        "put",
        s(&src),
        s(&vol),
        "db/main.db",
        "--page-size",
        "8192",
    ]);
    let ls = ok(&["file", "ls", s(&vol)]);
    assert!(
        ls.contains("3000000") && ls.contains("8192") && ls.contains("db/main.db"),
        "{ls}"
    );

    let back = dir.path().join("back.bin");
    ok(&["file", "get", s(&vol), "db/main.db", s(&back)]);
    assert!(std::fs::read(&back).unwrap() == data);

    // Overwrite with something shorter: the file shrinks to it.
    std::fs::write(&src, b"short").unwrap();
    ok(&["file", "put", s(&src), s(&vol), "db/main.db"]);
    ok(&["file", "get", s(&vol), "db/main.db", s(&back)]);
    assert_eq!(std::fs::read(&back).unwrap(), b"short");

    ok(&["file", "mv", s(&vol), "db/main.db", "renamed.db"]);
    assert!(ok(&["file", "stat", s(&vol), "renamed.db"]).contains("size:      5"));
    assert!(fails(&["file", "stat", s(&vol), "db/main.db"]).contains("no file"));

    assert!(ok(&["fsck", s(&vol)]).contains("clean"));
    let gc = ok(&["gc", s(&vol), "--grace", "0s"]);
    // 367 pages of 8 KiB in extents of 32 pages: 12 extents became garbage.
    assert!(
        gc.contains("deleted 12 unreferenced extents"),
        "the 3 MB version's extents are garbage now: {gc}"
    );
    assert!(ok(&["fsck", s(&vol)]).contains("clean"));
    ok(&["file", "rm", s(&vol), "renamed.db"]);
    assert_eq!(ok(&["file", "ls", s(&vol)]), "");
}

#[test]
fn fsck_exits_nonzero_when_an_extent_is_missing() {
    let dir = tempfile::tempdir().unwrap();
    let vol = dir.path().join("vol");
    ok(&["init", s(&vol)]);
    let src = dir.path().join("src.bin");
    std::fs::write(&src, vec![7u8; 100_000]).unwrap();
    ok(&["file", "put", s(&src), s(&vol), "f"]);
    // Remove every extent (the files that start with EXT1) behind fsx's back.
    let mut removed = 0;
    let mut stack = vec![vol.join("data")];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if std::fs::read(&p).unwrap().starts_with(b"EXT1") {
                std::fs::remove_file(&p).unwrap();
                removed += 1;
            }
        }
    }
    assert_eq!(removed, 1, "100 kB of one page size fit one extent");
    let out = fsx(&["fsck", s(&vol)]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("MISSING") && text.contains("NOT CLEAN"),
        "{text}"
    );
    // Reading the file now fails loudly instead of returning zeros.
    let err = fails(&["file", "get", s(&vol), "f", "-"]);
    assert!(err.contains("missing from the data store"), "{err}");
}

#[test]
fn bad_input_is_a_clear_error_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let vol = dir.path().join("vol");
    assert!(fails(&["init", s(&vol), "--extent-size", "3M"]).contains("power of two"));
    assert!(
        !vol.join("fsx-volume.json").exists(),
        "a refused init must not leave a volume behind"
    );
    assert!(fails(&["init", s(&vol), "--store", "memory://"]).contains("durable store"));
    assert!(fails(&["init", s(&vol), "--store", "ftp://x"]).contains("unknown store scheme"));
    ok(&["init", s(&vol)]);
    assert!(fails(&["init", s(&vol)]).contains("already an fsx volume"));
    let not_vol = dir.path().join("nothing");
    std::fs::create_dir(&not_vol).unwrap();
    assert!(fails(&["file", "ls", s(&not_vol)]).contains("is not an fsx volume"));
    let src = dir.path().join("src.bin");
    std::fs::write(&src, b"x").unwrap();
    assert!(
        fails(&["file", "put", s(&src), s(&vol), "f", "--page-size", "1000"])
            .contains("page size 1000")
    );
    assert!(fails(&["file", "get", s(&vol), "missing", "-"]).contains("no file"));
    assert_eq!(
        ok(&["file", "ls", s(&vol)]),
        "",
        "failed commands created nothing"
    );
}

#[tokio::test]
async fn a_second_writer_in_another_process_gets_a_busy_error() {
    use std::sync::Arc;
    let dir = tempfile::tempdir().unwrap();
    let vol = dir.path().join("vol");
    ok(&["init", s(&vol)]);
    let src = dir.path().join("src.bin");
    std::fs::write(&src, b"from the other process").unwrap();
    ok(&["file", "put", s(&src), s(&vol), "f"]);

    // This process opens f for writing and keeps it open.
    let meta = Arc::new(fsx_meta::sqlite::SqliteMeta::open(vol.join("meta.db"), false).unwrap());
    let store = Arc::new(fsx_store::local::LocalBackend::open(vol.join("data")).unwrap());
    let env = Arc::new(fsx_engine::SystemEnv::new());
    let volume = fsx_engine::Volume::open(meta, store, env, Default::default())
        .await
        .unwrap();
    let mut writer = volume
        .open_file("f", fsx_engine::OpenOptions::write())
        .await
        .unwrap();
    writer.write_at(0, b"FROM").await.unwrap();
    writer.sync().await.unwrap();

    std::fs::write(&src, b"clobber").unwrap();
    let err = fails(&["file", "put", s(&src), s(&vol), "f"]);
    assert!(
        err.contains("busy") || err.contains("open for writing"),
        "{err}"
    );
    // Readers in other processes are not blocked and see the synced state.
    let out = fsx(&["file", "get", s(&vol), "f", "-"]);
    assert!(out.status.success());
    assert_eq!(out.stdout, b"FROM the other process");

    writer.close().await.unwrap();
    ok(&["file", "put", s(&src), s(&vol), "f"]);
    assert_eq!(fsx(&["file", "get", s(&vol), "f", "-"]).stdout, b"clobber");
}

#[test]
fn a_volume_on_postgres_metadata_and_s3_data() {
    // Real servers: PostgreSQL for the metadata, SeaweedFS for the data.
    let pg = fsx_testkit::postgres::PgServer::start();
    let s3 = fsx_testkit::S3Fixture::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let vol = dir.path().join("vol");
    let meta_url = pg.fresh_url();
    let store_url = s3.url().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_fsx"))
        .args([
            "init",
            s(&vol),
            "--meta",
            &meta_url,
            "--store",
            &store_url,
            "--extent-size",
            "256K",
        ])
        .env("AWS_ACCESS_KEY_ID", s3.access_key())
        .env("AWS_SECRET_ACCESS_KEY", s3.secret_key())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_fsx"))
            .args(args)
            .env("AWS_ACCESS_KEY_ID", s3.access_key())
            .env("AWS_SECRET_ACCESS_KEY", s3.secret_key())
            .output()
            .unwrap()
    };
    let src = dir.path().join("src.bin");
    let data: Vec<u8> = (0..700_000u32)
        .map(|i| (i % 251) as u8 ^ (i >> 9) as u8)
        .collect();
    std::fs::write(&src, &data).unwrap();
    let out = run(&["file", "put", s(&src), s(&vol), "db"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = run(&["file", "get", s(&vol), "db", "-"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.stdout == data);
    let out = run(&["fsck", s(&vol)]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    // Without credentials the store cannot be opened: a clear message.
    let out = Command::new(env!("CARGO_BIN_EXE_fsx"))
        .args(["file", "ls", s(&vol)])
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("AWS_ACCESS_KEY_ID"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn an_unreachable_service_is_named_in_the_error() {
    let dir = tempfile::tempdir().unwrap();
    let port = fsx_testkit::free_port().unwrap();
    let err = fails(&[
        "init",
        s(&dir.path().join("a")),
        "--meta",
        &format!("postgres://fsx:pw@127.0.0.1:{port}/fsx"),
    ]);
    assert!(err.contains(&port.to_string()), "{err}");
    let err = fails(&[
        "init",
        s(&dir.path().join("b")),
        "--store",
        &format!("redis://127.0.0.1:{port}/0"),
    ]);
    assert!(
        err.contains("cannot create a volume") && err.contains("unavailable"),
        "{err}"
    );
    assert!(
        !dir.path().join("a/fsx-volume.json").exists()
            && !dir.path().join("b/fsx-volume.json").exists()
    );
}

fn stats(vol: &Path) -> serde_json::Value {
    serde_json::from_str(&ok(&["stats", s(vol), "--json"])).unwrap()
}

fn random_file(path: &Path, len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let data: Vec<u8> = (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    std::fs::write(path, &data).unwrap();
    data
}

/// The seed's promise: 100 MiB of 4 KiB pages, committed every 1,000
/// pages, costs about 50 extent PUTs instead of 25,600 page PUTs.
#[test]
fn a_100_mib_file_synced_every_1000_pages_costs_at_most_51_puts() {
    let dir = tempfile::tempdir().unwrap();
    let vol = dir.path().join("vol");
    ok(&["init", s(&vol)]);
    let before = stats(&vol);
    assert_eq!(
        before["tiers"]["cold"]["puts"], 1,
        "only the volume marker so far: {before}"
    );
    let src = dir.path().join("src.bin");
    let data = random_file(&src, 100 << 20, 42);
    ok(&[
        "file",
        "put",
        s(&src),
        s(&vol),
        "big.db",
        "--page-size",
        "4096",
        "--sync-pages",
        "1000",
    ]);
    let st = stats(&vol);
    let puts = st["tiers"]["cold"]["puts"].as_u64().unwrap() - 1;
    assert!(puts <= 51, "{puts} extent PUTs for 100 MiB: {st}");
    assert_eq!(st["extents"]["count"], 50, "{st}");
    assert!(st["tiers"]["cold"]["bytes_put"].as_u64().unwrap() >= 100 << 20);
    assert_eq!(st["files"]["bytes"], 100 << 20);
    let out = fsx(&["file", "get", s(&vol), "big.db", "-"]);
    assert!(out.status.success() && out.stdout == data);
    assert!(
        stats(&vol)["tiers"]["cold"]["gets"].as_u64().unwrap() >= 50,
        "reads are counted"
    );
}

/// Two 50 MiB files with the same content are stored once; deleting one
/// keeps the other whole, and GC frees nothing it still uses.
#[test]
fn identical_files_share_extents_and_survive_each_others_deletion() {
    let dir = tempfile::tempdir().unwrap();
    let vol = dir.path().join("vol");
    ok(&["init", s(&vol)]);
    let src = dir.path().join("src.bin");
    let data = random_file(&src, 50 << 20, 7);
    ok(&["file", "put", s(&src), s(&vol), "one.db"]);
    ok(&["file", "put", s(&src), s(&vol), "two.db"]);
    let st = stats(&vol);
    assert!(
        st["extents"]["bytes"].as_u64().unwrap() <= 51 << 20,
        "two identical 50 MiB files: {st}"
    );
    assert_eq!(st["extents"]["count"], 25, "{st}");
    ok(&["file", "rm", s(&vol), "one.db"]);
    let gc = ok(&["gc", s(&vol), "--grace", "0s"]);
    assert!(gc.contains("deleted 0 unreferenced extents"), "{gc}");
    let out = fsx(&["file", "get", s(&vol), "two.db", "-"]);
    assert!(out.status.success() && out.stdout == data);
    assert!(ok(&["fsck", s(&vol)]).contains("clean"));
    ok(&["file", "rm", s(&vol), "two.db"]);
    assert!(ok(&["gc", s(&vol), "--grace", "0s"]).contains("deleted 25 unreferenced extents"));
    assert_eq!(stats(&vol)["extents"]["count"], 0);
}

#[test]
fn a_refused_tier_option_leaves_no_volume() {
    let dir = tempfile::tempdir().unwrap();
    let vol = dir.path().join("vol");
    let err = fails(&["init", s(&vol), "--kv", "ftp://nowhere"]);
    assert!(err.contains("KV tier"), "{err}");
    assert!(!vol.exists(), "a refused init leaves nothing");
}
