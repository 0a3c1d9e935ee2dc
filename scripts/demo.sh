#!/usr/bin/env bash
# fsx's main job on the embedded default (SQLite metadata, local data
# directory; no external service): create a volume, store a database-sized
# file in it as content-addressed extents, read it back, and check the
# volume.
#
# Usage: scripts/demo.sh [DIR]   (default: a new temporary directory)
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"

cargo build --release --quiet --bin fsx
fsx=target/release/fsx
work=${1:-$(mktemp -d -t fsx-demo.XXXXXX)}
vol="$work/volume"

echo "==> fsx init $vol"
"$fsx" init "$vol"

echo "==> a 20 MiB file of 4 KiB pages (a database image stand-in)"
head -c $((20 << 20)) /dev/urandom > "$work/app.db"
"$fsx" file put "$work/app.db" "$vol" app.db --page-size 4096 --sync-pages 1000
"$fsx" file ls "$vol"

echo "==> read it back and compare"
"$fsx" file get "$vol" app.db "$work/app.db.out"
cmp "$work/app.db" "$work/app.db.out" && echo "identical"

echo "==> the extents it became"
"$fsx" stats "$vol"
"$fsx" fsck "$vol"
echo "volume left in $vol"
