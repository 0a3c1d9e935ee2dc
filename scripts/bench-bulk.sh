#!/usr/bin/env bash
# Bulk throughput of `fsx file put` / `fsx file get` next to their
# references, measured in the same run, interleaved (issue 17):
#
#   local: put vs `cp` + `sync` of the same file; get vs `cat` of the copy,
#          each read after dropping the page cache (needs root; without it
#          the reads are from the page cache and the script says so).
#   s3:    put / get vs `fsx store bench`'s 2 MiB put / get throughput at
#          the same concurrency (io.extents_in_flight, default 4), on the
#          store named by FSX_TEST_S3_URL (scripts/services.sh starts one).
#
# Usage: scripts/bench-bulk.sh [SIZE_MIB] [ROUNDS]    (default 1024 MiB, 3)
# Env:   FSX_BENCH_DIR (default /var/tmp), FSX (the fsx binary; default
#        target/release/fsx, built if missing), FSX_TEST_S3_URL (s3 runs).
# Prints one line per measurement, then the medians and ratios; peak RSS
# of every fsx run is reported (GNU time's %M).
set -euo pipefail

size_mib=${1:-1024}
rounds=${2:-3}
dir=${FSX_BENCH_DIR:-/var/tmp}/fsx-bench-bulk.$$
root=$(cd "$(dirname "$0")/.." && pwd)
fsx=${FSX:-$root/target/release/fsx}
if [[ ! -x $fsx ]]; then
    (cd "$root" && cargo build --release --locked -p fsx-cli)
fi
command -v /usr/bin/time >/dev/null || { echo "needs GNU time (/usr/bin/time): apt-get install time" >&2; exit 2; }
mkdir -p "$dir"
trap 'rm -rf "$dir"' EXIT

drop() {
    sync
    if [[ -w /proc/sys/vm/drop_caches ]]; then
        echo 3 >/proc/sys/vm/drop_caches
        # The binary itself is not what is measured.
        cat "$fsx" >/dev/null
    else
        dropped=no
    fi
}
dropped=yes

# Runs "$@", appends "SECONDS PEAK_KB" to the file named by $out.
timed() {
    local out=$1
    shift
    /usr/bin/time -f "%e %M" -o "$dir/t" "$@"
    cat "$dir/t" >>"$out"
}

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
# "min–max" of the first column of stdin: the spread beside each median.
spread() { sort -n | awk 'NR == 1 {lo = $1} {hi = $1} END {print lo "–" hi}'; }
peak() { awk '{print $2}' "$1" | sort -n | tail -1; }

echo "== $size_mib MiB of random bytes, $rounds rounds, $(nproc) cores, fsx $("$fsx" --version)"
head -c $((size_mib << 20)) /dev/urandom >"$dir/src.bin"
bytes=$((size_mib << 20))

for r in $(seq "$rounds"); do
    rm -rf "$dir/v" "$dir/copy"
    "$fsx" init "$dir/v" >/dev/null
    drop
    timed "$dir/cp" sh -c "cp '$dir/src.bin' '$dir/copy' && sync '$dir/copy'"
    drop
    timed "$dir/put" "$fsx" file put "$dir/src.bin" "$dir/v" big >/dev/null
    drop
    timed "$dir/cat" sh -c "cat '$dir/copy' >/dev/null"
    drop
    timed "$dir/get" sh -c "'$fsx' file get '$dir/v' big - >/dev/null"
    echo "round $r: cp+sync $(tail -1 "$dir/cp" | cut -d' ' -f1) s, put $(tail -1 "$dir/put" | cut -d' ' -f1) s, cat $(tail -1 "$dir/cat" | cut -d' ' -f1) s, get $(tail -1 "$dir/get" | cut -d' ' -f1) s"
done
"$fsx" file get "$dir/v" big "$dir/back.bin"
cmp "$dir/src.bin" "$dir/back.bin" || { echo "get returned different bytes" >&2; exit 1; }
rm -f "$dir/back.bin"

mbps() { awk -v b="$bytes" -v s="$1" 'BEGIN {printf "%.0f", b / s / 1e6}'; }
cp_s=$(cut -d' ' -f1 "$dir/cp" | median)
put_s=$(cut -d' ' -f1 "$dir/put" | median)
cat_s=$(cut -d' ' -f1 "$dir/cat" | median)
get_s=$(cut -d' ' -f1 "$dir/get" | median)
echo
echo "local directory store (medians; page cache dropped before each: $dropped)"
echo "| | reference | fsx | fsx ÷ reference (throughput) | fsx peak RSS |"
echo "|---|---|---|---|---|"
echo "| put | cp + sync: $cp_s s ($(cut -d' ' -f1 "$dir/cp" | spread); $(mbps "$cp_s") MB/s) | $put_s s ($(cut -d' ' -f1 "$dir/put" | spread); $(mbps "$put_s") MB/s) | $(awk -v a="$cp_s" -v b="$put_s" 'BEGIN{printf "%.2f", a/b}')× | $(peak "$dir/put") KB |"
echo "| get | cat: $cat_s s ($(cut -d' ' -f1 "$dir/cat" | spread); $(mbps "$cat_s") MB/s) | $get_s s ($(cut -d' ' -f1 "$dir/get" | spread); $(mbps "$get_s") MB/s) | $(awk -v a="$cat_s" -v b="$get_s" 'BEGIN{printf "%.2f", a/b}')× | $(peak "$dir/get") KB |"

if [[ -z ${FSX_TEST_S3_URL:-} ]]; then
    echo
    echo "(no FSX_TEST_S3_URL: S3 runs skipped; scripts/services.sh start starts SeaweedFS)"
    exit 0
fi
s3=$FSX_TEST_S3_URL
large=$((size_mib / 2))
((large > 256)) && large=256
for r in $(seq "$rounds"); do
    "$fsx" store bench "$s3" --small-count 1 --large-count "$large" --concurrency 4 >"$dir/sb.$r"
    prefix="bench-bulk-$$-$r"
    url=$(python3 -c "import sys,urllib.parse as u;p=u.urlsplit(sys.argv[1]);print(u.urlunsplit((p.scheme,p.netloc,'/'+sys.argv[2],p.query,'')))" "$s3" "$prefix")
    rm -rf "$dir/s3v"
    "$fsx" init "$dir/s3v" --store "$url" >/dev/null
    timed "$dir/s3put" "$fsx" file put "$dir/src.bin" "$dir/s3v" big >/dev/null
    rm -rf "$dir/s3v/cache" 2>/dev/null || true
    timed "$dir/s3get" sh -c "'$fsx' file get '$dir/s3v' big - >/dev/null"
    awk '$1 == "put" && $2 == "2MiB" {print $4}' "$dir/sb.$r" >>"$dir/sbput"
    awk '$1 == "get" && $2 == "2MiB" {print $4}' "$dir/sb.$r" >>"$dir/sbget"
    echo "round $r: s3 put $(tail -1 "$dir/s3put" | cut -d' ' -f1) s, get $(tail -1 "$dir/s3get" | cut -d' ' -f1) s; store bench 2 MiB put $(tail -1 "$dir/sbput") MB/s, get $(tail -1 "$dir/sbget") MB/s"
done
s3put_s=$(cut -d' ' -f1 "$dir/s3put" | median)
s3get_s=$(cut -d' ' -f1 "$dir/s3get" | median)
sbput=$(median <"$dir/sbput")
sbget=$(median <"$dir/sbget")
echo
echo "SeaweedFS S3 (medians; store bench: $large objects of 2 MiB, 4 in flight)"
echo "| | reference | fsx | fsx ÷ reference (throughput) | fsx peak RSS |"
echo "|---|---|---|---|---|"
echo "| put | store bench 2 MiB put: $sbput MB/s ($(spread <"$dir/sbput")) | $s3put_s s ($(cut -d' ' -f1 "$dir/s3put" | spread); $(mbps "$s3put_s") MB/s) | $(awk -v a="$(mbps "$s3put_s")" -v b="$sbput" 'BEGIN{printf "%.2f", a/b}')× | $(peak "$dir/s3put") KB |"
echo "| get | store bench 2 MiB get: $sbget MB/s ($(spread <"$dir/sbget")) | $s3get_s s ($(cut -d' ' -f1 "$dir/s3get" | spread); $(mbps "$s3get_s") MB/s) | $(awk -v a="$(mbps "$s3get_s")" -v b="$sbget" 'BEGIN{printf "%.2f", a/b}')× | $(peak "$dir/s3get") KB |"
