//! The `fsx extent` commands as an operator runs them: exit codes, the JSON
//! fields scripts rely on, and one line naming each bad file's fault.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn vectors() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fsx-format/testdata/ext1")
}

fn fsx(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_fsx"))
        .args(args)
        .output()
        .unwrap()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).unwrap()
}

#[test]
fn inspect_json_matches_the_manifest_for_every_vector() {
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(vectors().join("manifest.json")).unwrap())
            .unwrap();
    for v in manifest["vectors"].as_array().unwrap() {
        let file = vectors().join(v["file"].as_str().unwrap());
        let out = fsx(&["extent", "inspect", s(&file), "--json"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let j: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
        for field in [
            "page_size",
            "page_count",
            "flags",
            "extent_size",
            "present_pages",
            "content_key",
        ] {
            assert_eq!(j[field], v[field], "{} {field}", v["name"]);
        }
        assert_eq!(j["checksum"], v["checksum_fnv1a64_hex"]);
        assert_eq!(j["checksum"].as_str().unwrap().len(), 16);
        assert_eq!(j["checksum_ok"], true);
        assert_eq!(j["valid"], true);
    }
}

#[test]
fn inspect_text_names_fields_and_checksum_state() {
    let out = fsx(&["extent", "inspect", s(&vectors().join("full_2mib_4k.ext1"))]);
    assert!(out.status.success());
    let text = stdout(&out);
    assert!(text.contains("page size:     4096"), "{text}");
    assert!(text.contains("present pages: 512 [0-511]"), "{text}");
    assert!(text.contains("(ok)"), "{text}");
    assert!(text.contains("extent/ext-"), "{text}");
}

#[test]
fn inspect_reports_a_bad_checksum_and_exits_nonzero() {
    let dir = tempfile::tempdir().unwrap();
    let mut blob = std::fs::read(vectors().join("sparse_4k.ext1")).unwrap();
    let last = blob.len() - 1;
    blob[last] ^= 0xff;
    let bad = dir.path().join("bad.ext1");
    std::fs::write(&bad, &blob).unwrap();
    let out = fsx(&["extent", "inspect", s(&bad), "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let j: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(j["checksum_ok"], false);
    assert_eq!(j["valid"], false);
    assert_eq!(j["present_pages"], serde_json::json!([0, 2, 7, 9]));
    assert!(j["error"].as_str().unwrap().contains("checksum mismatch"));
}

#[test]
fn verify_accepts_all_vectors() {
    let mut args = vec!["extent".to_string(), "verify".to_string()];
    for e in std::fs::read_dir(vectors()).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "ext1") {
            args.push(p.to_str().unwrap().to_string());
        }
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = fsx(&args);
    assert!(
        out.status.success(),
        "{}{}",
        stdout(&out),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        stdout(&out),
        "",
        "valid files print nothing without --verbose"
    );
}

#[test]
fn verify_names_each_bad_file_and_its_fault_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let good = std::fs::read(vectors().join("sparse_4k.ext1")).unwrap();
    let write = |name: &str, bytes: &[u8]| {
        let p = dir.path().join(name);
        std::fs::write(&p, bytes).unwrap();
        p
    };
    let mut corrupt = good.clone();
    corrupt[100] ^= 1;
    let mut inconsistent = good.clone();
    inconsistent[16..20].copy_from_slice(&8192u32.to_le_bytes());
    let files = [
        write("good.ext1", &good),
        write("corrupt.ext1", &corrupt),
        write("truncated.ext1", &good[..good.len() - 10]),
        write("inconsistent.ext1", &inconsistent),
        write(
            "notanextent.ext1",
            b"hello world, this is not an extent at all......................",
        ),
        dir.path().join("missing.ext1"),
    ];
    let mut args = vec!["extent", "verify"];
    args.extend(files.iter().map(|p| s(p)));
    let out = fsx(&args);
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 5, "{text}");
    let line = |name: &str| {
        *lines
            .iter()
            .find(|l| l.contains(name))
            .unwrap_or_else(|| panic!("no line for {name}"))
    };
    assert!(!text.contains("good.ext1"));
    assert!(line("corrupt.ext1").contains("checksum mismatch"));
    assert!(line("truncated.ext1").contains("truncated"));
    assert!(line("inconsistent.ext1").contains("disagrees with the bitmap"));
    assert!(line("notanextent.ext1").contains("not an EXT1 extent"));
    assert!(line("missing.ext1").contains("cannot read"));
    // Verification never writes.
    assert_eq!(std::fs::read(&files[1]).unwrap(), corrupt);
}

#[test]
fn verify_on_one_good_file_exits_zero() {
    let out = fsx(&[
        "extent",
        "verify",
        "-v",
        s(&vectors().join("one_page_4k.ext1")),
    ]);
    assert!(out.status.success());
    assert!(stdout(&out).contains("one_page_4k.ext1: ok"));
}

#[test]
fn wrong_usage_is_a_clear_error() {
    let out = fsx(&["extent", "verify"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("required"));
    let out = fsx(&["extent", "inspect", "/nonexistent/x.ext1"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read /nonexistent/x.ext1"));
}
