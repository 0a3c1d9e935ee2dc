#!/usr/bin/env bash
# The whole fsx test suite, from a fresh clone on a fresh machine.
#
# Installs the tools the tests need, starts the real servers they talk to
# (on 127.0.0.1, free ports, stopped again on exit), checks formatting and
# lints, runs every test, and ends with bounded fuzz runs of the extent
# decoder and of request parsing. `.ci/run` calls exactly this script.
#
# Environment:
#   FSX_FUZZ_SECONDS      length of each fuzz target's run (default 30; two targets)
#   FSX_MOUNT_PG_SCALE    pgbench scale of the mount tests (default 2)
#   FSX_MOUNT_PG_SECONDS  pgbench run length of the mount tests (default 10)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

step() { printf '\n==> %s\n' "$*"; }

export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}
export PATH="$HOME/.cargo/bin:$PATH"

step "tools"
command -v cargo >/dev/null || { echo "cargo not found: install Rust (rustup) first" >&2; exit 1; }
if ! command -v cargo-nextest >/dev/null; then
    cargo install --locked cargo-nextest
fi
if ! command -v cargo-fuzz >/dev/null; then
    cargo install --locked cargo-fuzz
fi
# The extension tests drive the real sqlite3 shell and Debian's
# /usr/bin/python3. clang is only for the wasm32 check below (zstd's C
# sources are compiled for wasm with clang); the native build needs nothing
# but cargo.
missing=""
for pkg in clang sqlite3 python3 attr; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing="$missing $pkg"
done
if [ -n "$missing" ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing
fi
# The mount tests (crates/fsx-cli/tests/mount_db.rs) run PostgreSQL 15 as
# the postgres user (setpriv, from util-linux) and DuckDB, chDB and Kuzu
# from a virtualenv; they fail, never skip, without them.
if [ ! -x /usr/lib/postgresql/15/bin/pgbench ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql-15
fi
# The server's /metrics is checked with Prometheus's own promtool.
if ! command -v promtool >/dev/null; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus
fi
FSX_TEST_PYTHON=$(scripts/python-tools.sh)
export FSX_TEST_PYTHON
# The Workers build will reuse the runtime-free core, compiled to wasm32.
if command -v rustup >/dev/null; then
    rustup target list --installed | grep -qx wasm32-unknown-unknown \
        || rustup target add wasm32-unknown-unknown
elif ! rustc --print target-list | grep -qx wasm32-unknown-unknown \
    || [ ! -d "$(rustc --print sysroot)/lib/rustlib/wasm32-unknown-unknown" ]; then
    echo "the wasm32-unknown-unknown standard library is missing and rustup is not installed:" \
        "install Rust with rustup (https://rustup.rs) or add that target to your toolchain" >&2
    exit 1
fi
# The file-system suites run against `fsx mount` (crates/fsx-cli/tests/
# mount_suites.rs): pjdfstest (POSIX conformance) and the `fsx` exerciser,
# whose binary shares our name, so it lives in its own directory. FUSE
# mounts need /dev/fuse and root (or fusermount3).
tools="$root/target/tools"
if [ ! -x "$tools/bin/pjdfstest" ]; then
    cargo install --locked --root "$tools" pjdfstest --version 0.2.2
fi
if [ ! -x "$tools/exerciser/bin/fsx" ]; then
    cargo install --locked --root "$tools/exerciser" fsx --version 0.3.2
fi
export FSX_PJDFSTEST="$tools/bin/pjdfstest"
export FSX_EXERCISER="$tools/exerciser/bin/fsx"
[ -e /dev/fuse ] || { echo "/dev/fuse is missing: load the fuse module (modprobe fuse); the mount tests need it" >&2; exit 1; }
# pjdfstest switches to these users and groups.
if [ "$(id -u)" -eq 0 ]; then
    getent group tests >/dev/null || groupadd tests
    getent group pjdfstest >/dev/null || groupadd pjdfstest
    id tests >/dev/null 2>&1 || useradd -M -N -g tests tests
    id pjdfstest >/dev/null 2>&1 || useradd -M -N -g pjdfstest pjdfstest
fi
cargo --version
cargo nextest --version | head -n 1

step "formatting"
cargo fmt --all --check
(cd fuzz && cargo fmt --check)

step "lints"
cargo clippy --workspace --all-targets --locked -- -D warnings
# The runtime-free cores must also build without their optional backends.
for crate in fsx-store fsx-meta fsx-engine; do
    cargo clippy -p "$crate" --no-default-features --all-targets --locked -- -D warnings
done

step "docs"
# Broken intra-doc links are how module docs drift from the code.
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --locked

step "wasm32: the runtime-free core"
# No tokio, no threads, no OS calls: what the Cloudflare Workers build needs.
cargo build --locked --target wasm32-unknown-unknown --no-default-features \
    -p fsx-format -p fsx-protocol -p fsx-store -p fsx-meta -p fsx-engine

step "build tests"
# The file-system suites' mounts are served by a release build: the
# exerciser's 100,000 operations take minutes on an unoptimised daemon.
cargo build --release --locked -p fsx-cli
export FSX_MOUNT_BIN="$root/target/release/fsx"
# Built before the servers start, so the build's disk use is known when the
# disk check below runs rather than growing under a running SeaweedFS.
cargo nextest run --workspace --locked --no-run

step "disk space"
# SeaweedFS turns its volumes read-only once its disk is under 1% free, and
# every S3 PUT then fails with a 500; the tests also write about a GiB of
# their own. Say so up front instead of failing tests one by one.
tmp_root=${TMPDIR:-/tmp}
read -r size_kib avail_kib < <(df -Pk "$tmp_root" | awk 'NR == 2 { print $2, $4 }')
need_kib=$(( size_kib / 50 ))                        # 2% of the filesystem
(( need_kib < 2 * 1024 * 1024 )) && need_kib=$(( 2 * 1024 * 1024 ))   # at least 2 GiB
echo "$tmp_root: $(( avail_kib / 1024 )) MiB free of $(( size_kib / 1024 )) MiB (need $(( need_kib / 1024 )) MiB)"
if (( avail_kib < need_kib )); then
    echo "not enough free disk space under $tmp_root for the test servers: free some" \
        "(old cargo target directories are the usual culprit) or set TMPDIR to a roomier filesystem" >&2
    exit 1
fi

step "services: Redis, SeaweedFS (S3), PostgreSQL on free 127.0.0.1 ports"
services_env=$(mktemp -t fsx-services.XXXXXX)
pg_env=$(mktemp -t fsx-pg.XXXXXX)
cleanup() {
    scripts/services.sh stop "$services_env" || true
    scripts/services-postgres.sh stop "$pg_env" || true
    rm -f "$services_env" "$pg_env"
}
trap cleanup EXIT
scripts/services.sh start "$services_env"
scripts/services-postgres.sh start "$pg_env"
# shellcheck disable=SC1090
source "$services_env"
# shellcheck disable=SC1090
source "$pg_env"

step "tests"
# Doc tests first: nextest's summary should be the last test report printed.
cargo test --workspace --locked --doc
cargo nextest run --workspace --locked --no-fail-fast

# cargo-fuzz needs unstable rustc flags; RUSTC_BOOTSTRAP lets the stable
# toolchain accept them, so no nightly toolchain is required. Each target
# starts from its seeds in a fresh corpus: `decode` is the extent decoder,
# `request` what the server parses from untrusted requests.
for target in decode request; do
    step "fuzz: $target, ${FSX_FUZZ_SECONDS:-30} s"
    corpus=$(mktemp -d -t fsx-fuzz-corpus.XXXXXX)
    fuzz_log=$(mktemp -t fsx-fuzz-log.XXXXXX)
    if (cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run "$target" "$corpus" "seeds/$target" -- \
        -max_total_time="${FSX_FUZZ_SECONDS:-30}" -rss_limit_mb=2048 -print_final_stats=1) >"$fuzz_log" 2>&1; then
        tail -n 12 "$fuzz_log"
    else
        cat "$fuzz_log"
        echo "fuzzing found a failure; the reproducer is under fuzz/artifacts/$target/" >&2
        exit 1
    fi
    rm -rf "$corpus" "$fuzz_log"
done

step "all checks passed"
