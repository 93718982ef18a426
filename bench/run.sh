#!/usr/bin/env bash
# HandlerRuntime (hrt) against Debian's tgt, side by side on the same machine and the same
# backing file, with the same clients. Prints a markdown table, writes a JSON file and a
# PNG chart of the hrt/tgt ratios. See docs/performance.md for the method. Then hrt's NBD
# export against nbdkit (file plugin) and qemu-nbd on the same file, with fio's nbd engine
# (bench/report_nbd.py prints that table; docs/nbd.md).
#
# Needs root (tgtd; the missing packages are installed with apt-get). Settings:
#   BENCH_ROUNDS=3        rounds of A B (hrt, tgt) per workload; medians are reported
#   BENCH_SCALE=1         multiplies every request count (0.25 for a quick look)
#   BENCH_RANDOM_SECONDS=3  duration of each iscsi-perf random read run
#   BENCH_BACKINGS="shm disk"  shm: a file on /dev/shm; disk: a file in BENCH_DISK_DIR
#   BENCH_DISK_DIR=/var/tmp   where the on-disk backing file lives
#   BENCH_SIZE_MIB=1024   size of each backing file
#   BENCH_OUT=bench/results   where results.json, ratios.png and raw runs go
#   TGTD_ARGS=""          extra arguments for tgtd (its defaults otherwise)
#   BENCH_NO_BUILD=1      use the hrt already built in Release
#   HRT_BIN=path          another hrt executable (e.g. a copy of an earlier build, for before/after)
#   BENCH_FABRICS="iscsi nbd"  iscsi: hrt vs tgt; nbd: hrt's NBD export vs nbdkit and qemu-nbd
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)

rounds=${BENCH_ROUNDS:-3}
scale=${BENCH_SCALE:-1}
random_seconds=${BENCH_RANDOM_SECONDS:-3}
backings=${BENCH_BACKINGS:-"shm disk"}
fabrics=${BENCH_FABRICS:-"iscsi nbd"}
disk_dir=${BENCH_DISK_DIR:-/var/tmp}
size_mib=${BENCH_SIZE_MIB:-1024}
out=${BENCH_OUT:-$repo/bench/results}
mkdir -p "$out"
out=$(cd "$out" && pwd)

log() { echo "bench: $*" >&2; }

# ---- dependencies ----
if [ "$(id -u)" -ne 0 ]; then
  echo "bench/run.sh: run as root (tgtd needs it, and missing packages are installed with apt-get)" >&2
  exit 2
fi
need=()
for pkg in tgt libiscsi-bin qemu-utils qemu-block-extra fio gnuplot-nox python3 time iproute2 procps nbdkit libnbd-bin; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
  log "installing ${need[*]}"
  apt-get update -q >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${need[@]}" >&2
fi
command -v dotnet >/dev/null || { echo "bench/run.sh: the .NET 10 SDK is required (https://dot.net/download)" >&2; exit 2; }

if [ -z "${BENCH_NO_BUILD:-}" ]; then
  log "building hrt (Release)"
  dotnet build runtime -c Release -nologo -v q >&2
fi
hrt=${HRT_BIN:-$repo/runtime/bin/Release/net10.0/hrt}
[ -x "$hrt" ] || { echo "bench/run.sh: $hrt is missing; build it (dotnet build runtime -c Release)" >&2; exit 2; }

# ---- helpers ----
work=$(mktemp -d /tmp/hrt-bench.XXXXXX)
hrt_pid=""; tgt_pid=""; tgt_ctl=""; nbdkit_pid=""; qemu_nbd_pid=""
# tgtd ignores SIGTERM while it has targets: delete them and the system, then kill if still there.
stop_tgt() {
  [ -n "$tgt_pid" ] || return 0
  tgtadm -C "$tgt_ctl" --op delete --mode target --tid 1 --force >/dev/null 2>&1 || true
  tgtadm -C "$tgt_ctl" --op delete --mode system >/dev/null 2>&1 || true
  for _ in $(seq 20); do kill -0 "$tgt_pid" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$tgt_pid" 2>/dev/null || true
  wait "$tgt_pid" 2>/dev/null || true
  tgt_pid=""
}
stop_hrt() {
  [ -n "$hrt_pid" ] || return 0
  kill "$hrt_pid" 2>/dev/null || true
  wait "$hrt_pid" 2>/dev/null || true
  hrt_pid=""
}
stop_nbd_peers() {
  for p in $nbdkit_pid $qemu_nbd_pid; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  nbdkit_pid=""; qemu_nbd_pid=""
}
cleanup() {
  stop_hrt
  stop_tgt
  stop_nbd_peers
  rm -f /dev/shm/hrt-bench-$$.img "$disk_dir/hrt-bench-$$.img"
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
cpu_ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }   # utime+stime of every thread, in clock ticks
clk_tck=$(getconf CLK_TCK)
hrt_iqn=iqn.2026-11.org.handler-runtime:bench
tgt_iqn=iqn.2001-04.com.example:bench

start_hrt() {  # $1 backing file
  local port; port=$(free_port)
  hrt_nbd_port=$(free_port)
  mkdir -p "$work/hrt"
  cat > "$work/hrt/hrt.json" <<JSON
{ "logLevel": "warning",
  "iscsi": { "portals": [ "127.0.0.1:$port" ] },
  "nbd": { "listen": [ "127.0.0.1:$hrt_nbd_port" ] },
  "targets": [ { "name": "$hrt_iqn", "initiators": [] } ],
  "luns": [ { "name": "bench", "cfgstring": "file/$1", "target": "$hrt_iqn", "lun": 0,
              "blockSize": 512, "writeCache": true } ] }
JSON
  "$hrt" serve --config "$work/hrt/hrt.json" --control "$work/hrt/hrt.sock" --state-dir "$work/hrt/state" \
    --log-dir "$work/hrt/log" >"$work/hrt/out.txt" 2>&1 &
  hrt_pid=$!
  hrt_url=iscsi://127.0.0.1:$port/$hrt_iqn/0
  hrt_nbd_url=nbd://127.0.0.1:$hrt_nbd_port/bench
  for _ in $(seq 100); do
    iscsi-inq "$hrt_url" >/dev/null 2>&1 && return 0
    kill -0 "$hrt_pid" 2>/dev/null || break
    sleep 0.2
  done
  cat "$work/hrt/out.txt" >&2; echo "bench/run.sh: hrt serve did not come up" >&2; exit 1
}

start_tgt() {  # $1 backing file
  local port; port=$(free_port)
  tgt_ctl=$(( 1000 + RANDOM % 8000 ))
  # shellcheck disable=SC2086
  tgtd -f -C "$tgt_ctl" --iscsi portal=127.0.0.1:$port ${TGTD_ARGS:-} >"$work/tgtd.txt" 2>&1 &
  tgt_pid=$!
  for _ in $(seq 50); do tgtadm -C "$tgt_ctl" --op show --mode system >/dev/null 2>&1 && break; sleep 0.1; done
  tgtadm -C "$tgt_ctl" --lld iscsi --op new --mode target --tid 1 -T "$tgt_iqn"
  tgtadm -C "$tgt_ctl" --lld iscsi --op new --mode logicalunit --tid 1 --lun 1 -b "$1" --bstype rdwr
  tgtadm -C "$tgt_ctl" --lld iscsi --op bind --mode target --tid 1 -I ALL
  tgt_url=iscsi://127.0.0.1:$port/$tgt_iqn/1
  iscsi-inq "$tgt_url" >/dev/null || { cat "$work/tgtd.txt" >&2; echo "bench/run.sh: tgtd did not come up" >&2; exit 1; }
}

stop_servers() { stop_hrt; stop_tgt; }

# hrt's garbage collector so far: "allocated_bytes gen0 gen1 gen2" (from hrt status --json).
hrt_gc() {
  "$hrt" status --json --control "$work/hrt/hrt.sock" 2>/dev/null | python3 -c '
import json, sys
g = json.load(sys.stdin).get("gc") or {}
print(g.get("allocatedBytes", 0), g.get("gen0Collections", 0), g.get("gen1Collections", 0), g.get("gen2Collections", 0))'
}

scaled() { python3 -c "print(max(1, int($1 * $scale)))"; }

# Workloads: name|tool|arguments|requests|bytes per request
workloads() {
  echo "read4k_qd32|qemu|-d 32 -s 4096|$(scaled 100000)|4096"
  echo "write4k_qd32|qemu|-d 32 -s 4096 -w|$(scaled 100000)|4096"
  echo "read4k_qd1|qemu|-d 1 -s 4096|$(scaled 20000)|4096"
  echo "randread4k_qd32|perf|-m 32 -r -b 8 -t $random_seconds|0|4096"
  echo "read1m_qd8|qemu|-d 8 -s 1M|$(scaled 3000)|1048576"
  echo "write1m_qd8|qemu|-d 8 -s 1M -w|$(scaled 2000)|1048576"
}

# Runs one workload against one server; appends a JSON line to $raw.
run_one() {  # backing round server pid url name tool args count bytes
  local backing=$1 round=$2 server=$3 pid=$4 url=$5 name=$6 tool=$7 args=$8 count=$9 bytes=${10}
  local before after seconds requests
  local load; load=$(cut -d' ' -f1 /proc/loadavg)
  if ! kill -0 "$pid" 2>/dev/null; then
    local status=0; wait "$pid" || status=$?
    echo "bench/run.sh: $server (pid $pid) has gone (exit status $status) before $backing r$round $name; its output and log:" >&2
    cat "$work/hrt/out.txt" "$work/tgtd.txt" >&2 2>/dev/null || true
    tail -30 "$work/hrt/log/hrt.log" >&2 2>/dev/null || true
    # On a shared machine something else may stop it (seen: a clean SIGTERM from elsewhere).
    # Restart it once per run and say so in the results; a second loss ends the benchmark.
    [ "$server" = hrt ] && [ "$status" -eq 0 ] || exit 1
    restarts=$(( ${restarts:-0} + 1 ))
    [ "$restarts" -le 3 ] || { echo "bench/run.sh: hrt stopped $restarts times; giving up" >&2; exit 1; }
    start_hrt "$current_file"
    pid=$hrt_pid; url=$hrt_url
    # shellcheck disable=SC2086
    qemu-img bench -f raw -t none -c 20000 -d 32 -s 4096 "$url" </dev/null >/dev/null
    echo "bench/run.sh: hrt restarted (pid $pid) and warmed up; the run goes on" >&2
  fi
  local gc_before="0 0 0 0" gc_after="0 0 0 0"
  [ "$server" = hrt ] && gc_before=$(hrt_gc)
  local t0; t0=$(date +%s.%N)
  before=$(cpu_ticks "$pid")
  if [ "$tool" = qemu ]; then
    # shellcheck disable=SC2086
    /usr/bin/time -f "%U %S" -o "$work/time.txt" qemu-img bench -f raw -t none -c "$count" $args "$url" </dev/null >"$work/client.txt" 2>&1 \
      || { cat "$work/client.txt" >&2; exit 1; }
    seconds=$(sed -n 's/^Run completed in \([0-9.]*\) seconds.*/\1/p' "$work/client.txt")
    requests=$count
  else
    # shellcheck disable=SC2086
    /usr/bin/time -f "%U %S" -o "$work/time.txt" iscsi-perf $args "$url" </dev/null >"$work/client.txt" 2>&1 \
      || { cat "$work/client.txt" >&2; exit 1; }
    local iops; iops=$(tr '\r' '\n' <"$work/client.txt" | sed -n 's/^ *iops average \([0-9]*\) .*/\1/p' | tail -1)
    seconds=$random_seconds
    requests=$(( iops * random_seconds ))
  fi
  after=$(cpu_ticks "$pid")
  [ "$server" = hrt ] && gc_after=$(hrt_gc)
  local wall; wall=$(python3 -c "import time; print(time.time() - $t0)")
  read -r cu cs <"$work/time.txt"
  read -r a0 g00 g10 g20 <<<"$gc_before"
  read -r a1 g01 g11 g21 <<<"$gc_after"
  printf '{"backing":"%s","round":%s,"server":"%s","workload":"%s","requests":%s,"bytes":%s,"seconds":%s,"server_cpu_s":%s,"client_cpu_s":%s,"load":%s,"allocated_bytes":%s,"gcs":[%s,%s,%s],"status_overhead_bytes":%s,"idle_bytes":%s,"hrt_restarts":%s}\n' \
    "$backing" "$round" "$server" "$name" "$requests" "$bytes" "$seconds" \
    "$(python3 -c "print(($after-$before)/$clk_tck)")" "$(python3 -c "print($cu+$cs)")" "$load" \
    "$((a1 - a0))" "$((g01 - g00))" "$((g11 - g10))" "$((g21 - g20))" "${status_overhead:-0}" \
    "$(python3 -c "print(int(max(0, $wall * ${idle_bytes_per_s:-0})))")" "${restarts:-0}" >>"$raw"
  log "$backing r$round $server $name: ${seconds}s for $requests requests (load $load)"
}

# ---- NBD: hrt's export vs nbdkit (file plugin) vs qemu-nbd, fio's nbd engine ----

start_nbd_peers() {  # $1 backing file
  local kport qport; kport=$(free_port); qport=$(free_port)
  nbdkit -f -i 127.0.0.1 -p "$kport" file "$1" >"$work/nbdkit.txt" 2>&1 &
  nbdkit_pid=$!
  qemu-nbd -b 127.0.0.1 -p "$qport" -f raw -x bench -t -e 8 "$1" >"$work/qemu-nbd.txt" 2>&1 &
  qemu_nbd_pid=$!
  nbdkit_url=nbd://127.0.0.1:$kport/
  qemu_nbd_url=nbd://127.0.0.1:$qport/bench
  for _ in $(seq 100); do
    nbdinfo --size "$nbdkit_url" >/dev/null 2>&1 && nbdinfo --size "$qemu_nbd_url" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  cat "$work/nbdkit.txt" "$work/qemu-nbd.txt" >&2; echo "bench/run.sh: nbdkit or qemu-nbd did not come up" >&2; exit 1
}

# NBD workloads: name|fio arguments|requests|bytes per request (fio --io_size = requests x bytes)
nbd_workloads() {
  echo "read4k_qd32|--rw=read --bs=4k --iodepth=32|$(scaled 100000)|4096"
  echo "write4k_qd32|--rw=write --bs=4k --iodepth=32|$(scaled 100000)|4096"
  echo "read4k_qd1|--rw=read --bs=4k --iodepth=1|$(scaled 20000)|4096"
  echo "read1m_qd8|--rw=read --bs=1m --iodepth=8|$(scaled 3000)|1048576"
  echo "write1m_qd8|--rw=write --bs=1m --iodepth=8|$(scaled 2000)|1048576"
}

fio_nbd() {  # url args requests bytes -> prints "requests seconds"
  # shellcheck disable=SC2086
  /usr/bin/time -f "%U %S" -o "$work/time.txt" fio --name=bench --ioengine=nbd --uri="$1" $2 --io_size=$(( $3 * $4 )) \
    --output-format=json </dev/null >"$work/client.txt" 2>&1 || { cat "$work/client.txt" >&2; exit 1; }
  sed -n '/^{/,$p' "$work/client.txt" | python3 -c '
import json, sys
j = json.load(sys.stdin)["jobs"][0]
r = j["read"] if j["read"]["total_ios"] else j["write"]
print(r["total_ios"], j["job_runtime"] / 1000)'
}

run_one_nbd() {  # backing round server pid url name args requests bytes
  local backing=$1 round=$2 server=$3 pid=$4 url=$5 name=$6 args=$7 count=$8 bytes=$9
  kill -0 "$pid" 2>/dev/null || { echo "bench/run.sh: $server (pid $pid) has gone before $backing r$round $name" >&2; exit 1; }
  local load; load=$(cut -d' ' -f1 /proc/loadavg)
  local before after requests seconds
  before=$(cpu_ticks "$pid")
  read -r requests seconds <<<"$(fio_nbd "$url" "$args" "$count" "$bytes")"
  after=$(cpu_ticks "$pid")
  read -r cu cs <"$work/time.txt"
  printf '{"backing":"%s","round":%s,"server":"%s","workload":"%s","requests":%s,"bytes":%s,"seconds":%s,"server_cpu_s":%s,"client_cpu_s":%s,"load":%s}\n' \
    "$backing" "$round" "$server" "$name" "$requests" "$bytes" "$seconds" \
    "$(python3 -c "print(($after-$before)/$clk_tck)")" "$(python3 -c "print($cu+$cs)")" "$load" >>"$raw_nbd"
  log "$backing r$round nbd $server $name: ${seconds}s for $requests requests (load $load)"
}

bench_nbd() {  # backing file
  local backing=$1 file=$2
  # Random data: a zero-filled file would let hrt send its reads as hole chunks (no data on
  # the wire) where nbdkit and qemu-nbd send data; the comparison is about moving data.
  log "$backing: filling $file with random data for the NBD runs"
  dd if=/dev/urandom of="$file" bs=1M count="$size_mib" conv=fsync,notrunc status=none
  start_hrt "$file"
  start_nbd_peers "$file"
  local servers=("hrt $hrt_pid $hrt_nbd_url" "nbdkit $nbdkit_pid $nbdkit_url" "qemu-nbd $qemu_nbd_pid $qemu_nbd_url")
  # Warm-up: hrt's JIT tiers up, the page cache fills; not measured.
  while IFS='|' read -r name args count bytes; do
    for s in "${servers[@]}"; do
      set -- $s
      fio_nbd "$3" "$args" "$(( count / 4 > 0 ? count / 4 : 1 ))" "$bytes" >/dev/null
    done
  done < <(nbd_workloads)
  for round in $(seq "$rounds"); do
    while IFS='|' read -r name args count bytes; do
      for s in "${servers[@]}"; do
        set -- $s
        run_one_nbd "$backing" "$round" "$1" "$2" "$3" "$name" "$args" "$count" "$bytes"
      done
    done < <(nbd_workloads)
  done
  stop_hrt
  stop_nbd_peers
}

raw=$out/raw.jsonl
raw_nbd=$out/raw-nbd.jsonl
BENCH_DATE=$(date -u '+%Y-%m-%d %H:%M UTC'); export BENCH_DATE   # when the runs started, for the report
: >"$raw"
: >"$raw_nbd"
log "machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB; load before: $(cat /proc/loadavg)"
for backing in $backings; do
  case $backing in
    shm) file=/dev/shm/hrt-bench-$$.img ;;
    disk) file=$disk_dir/hrt-bench-$$.img ;;
    *) echo "bench/run.sh: unknown backing $backing (shm or disk)" >&2; exit 2 ;;
  esac
  log "$backing: filling $file ($size_mib MiB)"
  dd if=/dev/zero of="$file" bs=1M count="$size_mib" conv=fsync status=none
  current_file=$file
  if [[ " $fabrics " != *" iscsi "* ]]; then
    [[ " $fabrics " == *" nbd "* ]] && bench_nbd "$backing" "$file"
    rm -f "$file"
    continue
  fi
  start_hrt "$file"
  start_tgt "$file"
  # What one status request allocates in hrt itself, subtracted from each run's count.
  read -r s0 _ <<<"$(hrt_gc)"; read -r s1 _ <<<"$(hrt_gc)"; read -r s2 _ <<<"$(hrt_gc)"
  status_overhead=$(( (s2 - s0) / 2 ))
  # What hrt allocates when idle (timers: plugin rescans, keep-alives), per second, also subtracted.
  read -r i0 _ <<<"$(hrt_gc)"; sleep 3; read -r i1 _ <<<"$(hrt_gc)"
  idle_bytes_per_s=$(( (i1 - i0 - status_overhead) / 3 ))
  # Warm-up: hrt's JIT tiers up and both page caches fill; not measured.
  while IFS='|' read -r name tool args count bytes; do
    [ "$tool" = qemu ] || continue
    w=$(( count / 4 > 0 ? count / 4 : 1 ))
    # shellcheck disable=SC2086
    qemu-img bench -f raw -t none -c "$w" $args "$hrt_url" </dev/null >/dev/null
    # shellcheck disable=SC2086
    qemu-img bench -f raw -t none -c "$w" $args "$tgt_url" </dev/null >/dev/null
  done < <(workloads)
  for round in $(seq "$rounds"); do
    while IFS='|' read -r name tool args count bytes; do
      run_one "$backing" "$round" hrt "$hrt_pid" "$hrt_url" "$name" "$tool" "$args" "$count" "$bytes"
      run_one "$backing" "$round" tgt "$tgt_pid" "$tgt_url" "$name" "$tool" "$args" "$count" "$bytes"
    done < <(workloads)
  done
  stop_servers
  [[ " $fabrics " == *" nbd "* ]] && bench_nbd "$backing" "$file"
  rm -f "$file"
done

[ -s "$raw" ] && python3 "$repo/bench/report.py" "$raw" "$out" "$rounds"
[ -s "$raw_nbd" ] && python3 "$repo/bench/report_nbd.py" "$raw_nbd" "$out" "$rounds"
exit 0
