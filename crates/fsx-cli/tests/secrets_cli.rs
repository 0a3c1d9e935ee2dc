//! No password in any output: every CLI path that names a metadata or store
//! URL — errors with dead servers, bad URLs, successful commands, JSON
//! output, debug logs — is run with a URL holding a secret, and the secret
//! must appear in no stdout or stderr. Credentials given outside the URL
//! (`PGPASSWORD`, `password_file=`) keep the volume file free of them, and
//! the volume file is created 0600. Real PostgreSQL, Redis and S3.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use common::s;

const SECRET: &str = "Hunter2Secret";

/// Runs `fsx args` with `envs` and the most verbose logging; returns the
/// exit code and stdout + stderr together.
fn run(args: &[&str], envs: &[(&str, &str)]) -> (Option<i32>, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_fsx"));
    cmd.args(args).env("FSX_LOG", "trace");
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code(), text)
}

/// Runs a command that must not show `secret`; returns its code and output.
fn hidden(secret: &str, args: &[&str], envs: &[(&str, &str)]) -> (Option<i32>, String) {
    let (code, text) = run(args, envs);
    assert!(
        !text.contains(secret),
        "fsx {args:?} showed the secret:\n{text}"
    );
    (code, text)
}

/// A failing command: exit 2, no secret, and a message.
fn fails_hidden(secret: &str, args: &[&str], envs: &[(&str, &str)]) -> String {
    let (code, text) = hidden(secret, args, envs);
    assert_eq!(code, Some(2), "fsx {args:?} should fail: {text}");
    assert!(text.contains("fsx: error:"), "{text}");
    text
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[test]
fn dead_servers_and_bad_urls_never_show_the_password() {
    let dir = tempfile::tempdir().unwrap();
    let v = dir.path().join("v");
    let v = s(&v);
    let dead_pg = format!("postgres://alice:{SECRET}@127.0.0.1:1/db?connect_timeout=2");
    let dead_redis = format!("redis://:{SECRET}@127.0.0.1:1/0");
    let dead_redis_user = format!("redis://alice:{SECRET}@127.0.0.1:1/0?prefix=p");
    let dead_s3 = "s3://bk/p?endpoint=http://127.0.0.1:1";
    let s3_env = [
        ("AWS_ACCESS_KEY_ID", "AKID"),
        ("AWS_SECRET_ACCESS_KEY", SECRET),
    ];
    let no_env: [(&str, &str); 0] = [];
    // The case: the inner message hid it, the outer repeated it.
    let text = fails_hidden(SECRET, &["init", v, "--meta", &dead_pg], &no_env);
    assert!(text.contains("alice:***@127.0.0.1:1"), "{text}");
    for args in [
        vec!["init", v, "--store", &dead_redis],
        vec!["init", v, "--store", &dead_redis_user],
        vec!["init", v, "--store", dead_s3],
        // Credentials in an S3 URL are refused without being shown.
        vec!["init", v, "--store", "s3://AKID:Hunter2Secret@bk/p"],
        vec![
            "init",
            v,
            "--store",
            "s3://bk/p?endpoint=http://127.0.0.1:1&secret_access_key=Hunter2Secret",
        ],
        // URLs that do not parse or name no known engine.
        vec![
            "init",
            v,
            "--meta",
            "postgres://alice:Hunter2Secret@[::1/db",
        ],
        vec!["init", v, "--meta", "mysql://alice:Hunter2Secret@h/db"],
        vec!["init", v, "--store", "ftp://alice:Hunter2Secret@h/x"],
        vec![
            "init",
            v,
            "--store",
            "redis://:Hunter2Secret@127.0.0.1:1/0?max_value=x",
        ],
        vec![
            "init",
            v,
            "--cache",
            "lru://alice:Hunter2Secret@h?capacity=x",
        ],
    ] {
        fails_hidden(SECRET, &args, &s3_env);
    }
    // `fsx store` reports failed checks (exit 1) or errors (exit 2).
    for args in [
        vec!["store", "check", &dead_redis],
        vec!["store", "bench", &dead_redis],
        vec!["store", "check", dead_s3],
    ] {
        let (code, text) = hidden(SECRET, &args, &s3_env);
        assert!(matches!(code, Some(1 | 2)), "{args:?}: {text}");
    }
    assert!(!Path::new(v).exists(), "a refused init left {v} behind");
    // A password file that cannot be read is named, its URL redacted.
    let text = fails_hidden(
        SECRET,
        &[
            "init",
            v,
            "--meta",
            "postgres://alice:Hunter2Secret@127.0.0.1:1/db?password_file=/nonexistent/pw",
        ],
        &no_env,
    );
    // (A password in the URL wins, so the file is not even read.)
    assert!(text.contains("alice:***@"), "{text}");
    let text = fails_hidden(
        SECRET,
        &[
            "init",
            v,
            "--meta",
            "postgres://alice@127.0.0.1:1/db?password_file=/nonexistent/pw",
        ],
        &[("PGPASSWORD", SECRET)],
    );
    assert!(text.contains("/nonexistent/pw"), "{text}");

    // A KV tier on a dead Redis: init only records it; later commands and
    // the tier configuration show it redacted.
    let (code, text) = hidden(SECRET, &["init", v, "--kv", &dead_redis], &no_env);
    assert_eq!(code, Some(0), "{text}");
    // The embedded metadata now holds the KV URL: owner-only, like the
    // volume file.
    for f in ["meta.db", "fsx-volume.json"] {
        assert_eq!(mode(&Path::new(v).join(f)), 0o600, "{f}");
    }
    let src = dir.path().join("src.bin");
    std::fs::write(&src, common::random(10_000, 3)).unwrap();
    for args in [
        vec!["file", "put", s(&src), v, "a"],
        vec!["tier", "status", v, "--json"],
        vec!["tier", "config", v, "--kv-min-hits", "3"],
        vec!["tier", "replicate", v],
        vec!["fsck", v],
    ] {
        hidden(SECRET, &args, &no_env);
    }
}

#[test]
fn a_volume_on_postgres_never_shows_its_password() {
    let pg = fsx_testkit::postgres::PgServer::start();
    let url = pg.fresh_url();
    let parsed = url::Url::parse(&url).unwrap();
    let password = parsed.password().expect("the test server has a password");
    assert!(password.len() >= 8, "a password that is easy to spot");
    let dir = tempfile::tempdir().unwrap();
    let vol = dir.path().join("v");
    let v = s(&vol);
    let no_env: [(&str, &str); 0] = [];
    let (code, text) = hidden(password, &["init", v, "--meta", &url], &no_env);
    assert_eq!(code, Some(0), "{text}");
    assert!(
        text.contains(":***@"),
        "init shows the URL redacted: {text}"
    );
    let vf = vol.join("fsx-volume.json");
    assert_eq!(mode(&vf), 0o600, "the volume file holds a password");

    let src = dir.path().join("src.bin");
    std::fs::write(&src, common::random(10_000, 7)).unwrap();
    for args in [
        vec!["file", "put", s(&src), v, "a"],
        vec!["file", "ls", v],
        vec!["stats", v],
        vec!["stats", v, "--json"],
        vec!["fsck", v],
        vec!["tier", "status", v, "--json"],
        vec!["log", v],
    ] {
        let (code, text) = hidden(password, &args, &no_env);
        assert_eq!(code, Some(0), "fsx {args:?}: {text}");
    }

    // The server goes away (the volume file now names a dead one, with a
    // new password): every command fails without showing it.
    let dead = format!("postgres://fsx:{SECRET}@127.0.0.1:1/postgres?connect_timeout=2");
    let text = std::fs::read_to_string(&vf).unwrap();
    std::fs::write(&vf, text.replace(&url, &dead)).unwrap();
    for args in [
        vec!["file", "ls", v],
        vec!["file", "get", v, "a", s(&dir.path().join("out"))],
        vec!["stats", v, "--json"],
        vec!["fsck", v],
        vec!["gc", v],
        vec!["sql", v, "t.db", "select 1"],
        vec!["tier", "status", v],
    ] {
        fails_hidden(SECRET, &args, &no_env);
    }
}

#[test]
fn postgres_passwords_can_come_from_the_environment_or_a_file() {
    let pg = fsx_testkit::postgres::PgServer::start();
    let dir = tempfile::tempdir().unwrap();
    let no_env: [(&str, &str); 0] = [];
    let with_pw = url::Url::parse(&pg.fresh_url()).unwrap();
    let password = with_pw.password().unwrap().to_owned();
    let mut bare = with_pw.clone();
    bare.set_password(None).unwrap();

    // PGPASSWORD: the URL and the volume file hold no password.
    let vol = dir.path().join("env");
    let (code, text) = hidden(
        &password,
        &["init", s(&vol), "--meta", bare.as_str()],
        &[("PGPASSWORD", &password)],
    );
    assert_eq!(code, Some(0), "{text}");
    let file = std::fs::read_to_string(vol.join("fsx-volume.json")).unwrap();
    assert!(!file.contains(&password), "{file}");
    let (code, text) = hidden(&password, &["stats", s(&vol)], &[("PGPASSWORD", &password)]);
    assert_eq!(code, Some(0), "{text}");
    // Without it the server refuses, and says so without a password.
    let (code, text) = hidden(&password, &["stats", s(&vol)], &no_env);
    assert_eq!(code, Some(2), "{text}");

    // password_file=: the file's first line, the file named in the URL.
    let pw_file = dir.path().join("pg.pw");
    std::fs::write(&pw_file, format!("{password}\n")).unwrap();
    // A fresh schema: the first volume owns the other one.
    let mut in_file = url::Url::parse(&pg.fresh_url()).unwrap();
    in_file.set_password(None).unwrap();
    in_file
        .query_pairs_mut()
        .append_pair("password_file", s(&pw_file));
    let vol = dir.path().join("file");
    let (code, text) = hidden(
        &password,
        &["init", s(&vol), "--meta", in_file.as_str()],
        &no_env,
    );
    assert_eq!(code, Some(0), "{text}");
    let file = std::fs::read_to_string(vol.join("fsx-volume.json")).unwrap();
    assert!(!file.contains(&password), "{file}");
    let (code, text) = hidden(&password, &["stats", s(&vol), "--json"], &no_env);
    assert_eq!(code, Some(0), "{text}");
}

/// Sends one inline command to the Redis at `base` (`redis://host:port/db`)
/// and returns its first reply line.
fn redis_inline(base: &str, command: &str) -> String {
    use std::io::{BufRead, BufReader, Write};
    let u = url::Url::parse(base).unwrap();
    let mut stream =
        std::net::TcpStream::connect((u.host_str().unwrap(), u.port().unwrap())).unwrap();
    stream
        .write_all(format!("{command}\r\n").as_bytes())
        .unwrap();
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line).unwrap();
    line
}

#[test]
fn redis_passwords_come_from_the_environment_or_a_file_and_are_never_shown() {
    // A user that needs a password, on the shared server (the default user
    // the other tests use is left alone).
    let redis = fsx_testkit::RedisFixture::new().unwrap();
    let base = redis.base_url().to_owned();
    let user = format!("fsx-secret-{}", std::process::id());
    let reply = redis_inline(&base, &format!("ACL SETUSER {user} on >{SECRET} ~* +@all"));
    assert!(reply.starts_with("+OK"), "{reply}");
    let mut store = url::Url::parse(&base).unwrap();
    store.set_username(&user).unwrap();
    store.query_pairs_mut().append_pair(
        "prefix",
        &fsx_testkit::unique_prefix("secret").replace('/', ":"),
    );
    let dir = tempfile::tempdir().unwrap();
    let no_env: [(&str, &str); 0] = [];

    let v = dir.path().join("v");
    // A wrong one in the URL: refused without showing it.
    let mut wrong = store.clone();
    wrong.set_password(Some("Hunter2Wrong")).unwrap();
    fails_hidden(
        "Hunter2Wrong",
        &["init", s(&v), "--store", wrong.as_str()],
        &no_env,
    );

    // REDIS_PASSWORD: accepted; the volume file holds no password.
    let env = [("REDIS_PASSWORD", SECRET)];
    let (code, text) = hidden(SECRET, &["init", s(&v), "--store", store.as_str()], &env);
    assert_eq!(code, Some(0), "{text}");
    let src = dir.path().join("a.bin");
    std::fs::write(&src, common::random(20_000, 9)).unwrap();
    for args in [
        vec!["file", "put", s(&src), s(&v), "a"],
        vec!["stats", s(&v), "--json"],
        vec!["fsck", s(&v)],
    ] {
        let (code, text) = hidden(SECRET, &args, &env);
        assert_eq!(code, Some(0), "{args:?}: {text}");
    }
    let file = std::fs::read_to_string(v.join("fsx-volume.json")).unwrap();
    assert!(!file.contains(SECRET), "{file}");

    // password_file=: the same, with the file named in the URL.
    let pw = dir.path().join("redis.pw");
    std::fs::write(&pw, format!("{SECRET}\n")).unwrap();
    let mut in_file = url::Url::parse(&base).unwrap();
    in_file.set_username(&user).unwrap();
    in_file
        .query_pairs_mut()
        .append_pair(
            "prefix",
            &fsx_testkit::unique_prefix("secret").replace('/', ":"),
        )
        .append_pair("password_file", s(&pw));
    let v2 = dir.path().join("file");
    let (code, text) = hidden(
        SECRET,
        &["init", s(&v2), "--store", in_file.as_str()],
        &no_env,
    );
    assert_eq!(code, Some(0), "{text}");
    let (code, text) = hidden(SECRET, &["file", "put", s(&src), s(&v2), "a"], &no_env);
    assert_eq!(code, Some(0), "{text}");
    let reply = redis_inline(&base, &format!("ACL DELUSER {user}"));
    assert!(reply.starts_with(':'), "{reply}");
}

#[test]
fn s3_credentials_never_show_in_trace_logs() {
    let s3 = fsx_testkit::S3Fixture::new().unwrap();
    let secret = s3.secret_key().to_owned();
    assert!(secret.len() >= 8, "a secret that is easy to spot");
    let dir = tempfile::tempdir().unwrap();
    let v = dir.path().join("v");
    let url = s3.url().unwrap();
    let env = [
        ("AWS_ACCESS_KEY_ID", s3.access_key()),
        ("AWS_SECRET_ACCESS_KEY", secret.as_str()),
    ];
    let src = dir.path().join("a.bin");
    std::fs::write(&src, common::random(20_000, 5)).unwrap();
    for args in [
        vec!["init", s(&v), "--store", url.as_str()],
        vec!["file", "put", s(&src), s(&v), "a"],
        vec!["fsck", s(&v)],
        vec!["stats", s(&v), "--json"],
        vec!["store", "check", url.as_str()],
    ] {
        let (code, text) = hidden(&secret, &args, &env);
        assert_eq!(code, Some(0), "{args:?}: {text}");
    }
}
