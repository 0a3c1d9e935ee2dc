#!/usr/bin/env bash
# A Python virtualenv with the embedded database engines the mount tests
# run (crates/fsx-cli/tests/mount_db.rs): DuckDB, chDB (ClickHouse in
# process) and Kuzu, at versions known to work here.
#
#   scripts/python-tools.sh            # create or update, print the interpreter's path
#   export FSX_TEST_PYTHON=$(scripts/python-tools.sh)
#
# The virtualenv is target/py (FSX_PY_VENV names another place). Idempotent
# and quick when it is already complete: pip runs only if an import fails or
# a version differs. Everything but the path goes to stderr.
set -euo pipefail
cd "$(dirname "$0")/.."

venv=${FSX_PY_VENV:-$(pwd)/target/py}
# Pinned: what the tests were written against.
packages=(duckdb==2.0.1 chdb==4.4.0 kuzu==0.11.3)

log() { echo "python-tools: $*" >&2; }

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

complete() {
    [ -x "$venv/bin/python" ] && "$venv/bin/python" - "${packages[@]}" >/dev/null 2>&1 <<'PY'
import sys
from importlib.metadata import version
import duckdb, chdb, kuzu  # noqa: F401  (the import itself must work)
for spec in sys.argv[1:]:
    name, want = spec.split("==")
    if version(name) != want:
        sys.exit(1)
PY
}

if ! complete; then
    if [ ! -x "$venv/bin/python" ]; then
        py=$(command -v python3 || true)
        [ -n "$py" ] || { log "python3 not found"; exit 1; }
        if ! "$py" -m venv "$venv" >&2 2>&1; then
            # Debian's python3 keeps venv (and ensurepip) in another package.
            log "installing python3-venv"
            rm -rf "$venv"
            as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
            as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >&2
            "$py" -m venv "$venv" >&2
        fi
    fi
    log "installing ${packages[*]} into $venv"
    "$venv/bin/python" -m pip install -q --disable-pip-version-check "${packages[@]}" >&2
    complete || { log "$venv still cannot import duckdb, chdb and kuzu at ${packages[*]}"; exit 1; }
fi
echo "$venv/bin/python"
