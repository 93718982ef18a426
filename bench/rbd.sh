#!/usr/bin/env bash
# The rbd handler against Debian's tgt with its rbd backing store (tgt-rbd), on one ceph-mini
# cluster, with fio's rbd engine straight on librbd as the no-target ceiling. Prints a markdown
# table of IOPS and MiB/s with the ratios hrt/tgt and hrt/ceiling, and writes it to
# $BENCH_OUT/rbd.md.
#
# fio has no iSCSI engine in Debian and this kernel has no iSCSI initiator, so both targets are
# driven the same way: fio's nbd engine into qemu-nbd, which is an iSCSI initiator (libiscsi) to
# the target. That hop costs both targets the same; the ceiling has none.
#
# Needs root (tgtd, apt-get for missing packages). Settings:
#   BENCH_RBD_SECONDS=10   seconds per workload and server
#   BENCH_RBD_SIZE=512M    the part of each image the workloads touch (prefilled first)
#   BENCH_OUT=bench/results
#   CEPH_MINI_TOOLS=dir    where ceph-mini-{install,up,down} are (default ../shared/tools/ceph-mini)
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
secs=${BENCH_RBD_SECONDS:-10}
size=${BENCH_RBD_SIZE:-512M}
out=${BENCH_OUT:-$repo/bench/results}
mkdir -p "$out"
log() { echo "bench/rbd: $*" >&2; }

tools=${CEPH_MINI_TOOLS:-}
for t in "$repo/../shared/tools/ceph-mini" "$repo/../../shared/tools/ceph-mini" /work/shared/tools/ceph-mini; do
  [ -z "$tools" ] && [ -x "$t/ceph-mini-up" ] && tools=$t
done
[ -n "$tools" ] || { echo "bench/rbd.sh: ceph-mini not found; set CEPH_MINI_TOOLS" >&2; exit 2; }
[ "$(id -u)" -eq 0 ] || { echo "bench/rbd.sh: run as root (tgtd, apt-get)" >&2; exit 2; }
need=()
for pkg in tgt tgt-rbd qemu-utils qemu-block-extra fio libiscsi-bin python3; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
  log "installing ${need[*]}"
  apt-get update -q >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${need[@]}" >&2
fi
"$tools/ceph-mini-install"
[ -n "${BENCH_NO_BUILD:-}" ] || dotnet build HandlerRuntime.sln -c Release -nologo -v q >&2
hrt=$repo/runtime/bin/Release/net10.0/hrt

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
work=$(mktemp -d /tmp/hrt-bench-rbd.XXXXXX)
export CEPH_MINI_DIR=/var/tmp/hrt-bench-rbd-$$ CEPH_MINI_IMAGE="" CEPH_MINI_OSD_SIZE=6G
CEPH_MINI_MON_PORT=$(free_port); CEPH_MINI_MON_V1_PORT=$(free_port); export CEPH_MINI_MON_PORT CEPH_MINI_MON_V1_PORT
# No client cache for any of the three (hrt always turns it off, as tcmu-runner does; the cache
# also stalls on two cores, see ceph-mini's README).
export CEPH_MINI_EXTRA_CONF="rbd_cache = false"
hrt_pid=""; tgt_pid=""; tgt_ctl=$(( 1000 + RANDOM % 8000 )); nbd_pids=()
cleanup() {
  for p in "${nbd_pids[@]}"; do kill "$p" 2>/dev/null || true; done
  [ -n "$hrt_pid" ] && { kill "$hrt_pid" 2>/dev/null || true; wait "$hrt_pid" 2>/dev/null || true; }
  if [ -n "$tgt_pid" ]; then
    tgtadm -C "$tgt_ctl" --op delete --mode target --tid 1 --force >/dev/null 2>&1 || true
    tgtadm -C "$tgt_ctl" --op delete --mode system >/dev/null 2>&1 || true
    sleep 0.5; kill -9 "$tgt_pid" 2>/dev/null || true
  fi
  "$tools/ceph-mini-down" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log "starting ceph-mini in $CEPH_MINI_DIR"
"$tools/ceph-mini-up" --fresh >/dev/null
. "$CEPH_MINI_DIR/env"
for img in hrt tgt fio; do
  rbd create --size 2G "rbd/bench-$img"
  # Random reads of never-written objects cost the OSD nothing: fill the benchmarked part first.
  fio --name=fill --ioengine=rbd --clientname=admin --pool=rbd --rbdname="bench-$img" --rw=write --bs=4M --iodepth=4 \
    --size="$size" --output=/dev/null
done

port=$(free_port)
hrt_iqn=iqn.2026-11.org.handler-runtime:bench
cat > "$work/hrt.json" <<JSON
{ "logLevel": "warning", "iscsi": { "portals": [ "127.0.0.1:$port" ] },
  "targets": [ { "name": "$hrt_iqn", "initiators": [] } ],
  "luns": [ { "name": "bench", "cfgstring": "rbd/rbd/bench-hrt", "target": "$hrt_iqn", "lun": 0 } ] }
JSON
"$hrt" serve --config "$work/hrt.json" --control "$work/hrt.sock" --state-dir "$work/state" --log-dir "$work" >"$work/hrt.out" 2>&1 &
hrt_pid=$!
tport=$(free_port)
tgt_iqn=iqn.2001-04.com.example:bench
tgtd -f -C "$tgt_ctl" --iscsi portal=127.0.0.1:$tport >"$work/tgtd.out" 2>&1 &
tgt_pid=$!
for _ in $(seq 50); do tgtadm -C "$tgt_ctl" --op show --mode system >/dev/null 2>&1 && break; sleep 0.1; done
tgtadm -C "$tgt_ctl" --lld iscsi --op new --mode target --tid 1 -T "$tgt_iqn"
tgtadm -C "$tgt_ctl" --lld iscsi --op new --mode logicalunit --tid 1 --lun 1 --bstype rbd --backing-store rbd/bench-tgt --bsopts "conf=$CEPH_CONF"
tgtadm -C "$tgt_ctl" --lld iscsi --op bind --mode target --tid 1 -I ALL
for _ in $(seq 100); do iscsi-inq "iscsi://127.0.0.1:$port/$hrt_iqn/0" >/dev/null 2>&1 && break; sleep 0.2; done
iscsi-inq "iscsi://127.0.0.1:$port/$hrt_iqn/0" >/dev/null || { cat "$work/hrt.out" >&2; exit 1; }
iscsi-inq "iscsi://127.0.0.1:$tport/$tgt_iqn/1" >/dev/null || { cat "$work/tgtd.out" >&2; exit 1; }

bridge() { # name portal iqn lun: qemu-nbd as the iSCSI initiator, on a unix socket
  qemu-nbd --image-opts "driver=raw,file.driver=iscsi,file.transport=tcp,file.portal=$2,file.target=$3,file.lun=$4,file.initiator-name=iqn.2026-11.org.bench:$1" \
    -k "$work/$1.sock" --cache=none --aio=threads -e 4 -t >"$work/$1.nbd" 2>&1 &
  nbd_pids+=($!)
  for _ in $(seq 50); do [ -S "$work/$1.sock" ] && return 0; sleep 0.1; done
  cat "$work/$1.nbd" >&2; exit 1
}
bridge hrt "127.0.0.1:$port" "$hrt_iqn" 0
bridge tgt "127.0.0.1:$tport" "$tgt_iqn" 1

workloads="randread:4k:32 randwrite:4k:32 read:1m:8 write:1m:8"
results=$work/results.txt
: >"$results"
run() { # server workload bs depth
  local engine
  if [ "$1" = ceiling ]; then engine=(--ioengine=rbd --clientname=admin --pool=rbd --rbdname=bench-fio)
  else engine=(--ioengine=nbd "--uri=nbd+unix:///?socket=$work/$1.sock"); fi
  fio --name="$1-$2" "${engine[@]}" --rw="$2" --bs="$3" --iodepth="$4" --size="$size" --time_based --runtime="$secs" \
    --ramp_time=2 --output-format=json --output="$work/$1-$2.json" >/dev/null
  python3 - "$work/$1-$2.json" "$1" "$2" >>"$results" <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))["jobs"][0]
side = j["read"] if j["read"]["io_bytes"] > 0 else j["write"]
print(sys.argv[2], sys.argv[3], side["iops"], side["bw_bytes"] / 2**20)
PY
  log "$(tail -1 "$results")"
}
for w in $workloads; do
  IFS=: read -r rw bs depth <<<"$w"
  for server in ceiling hrt tgt; do run "$server" "$rw" "$bs" "$depth"; done
done
python3 - "$results" "$secs" <<'PY' | tee "$out/rbd.md"
import sys, collections
r = collections.defaultdict(dict)
for line in open(sys.argv[1]):
    server, w, iops, mib = line.split()
    r[w][server] = (float(iops), float(mib))
names = {"randread": "4 KiB random read, QD32", "randwrite": "4 KiB random write, QD32", "read": "1 MiB read, QD8", "write": "1 MiB write, QD8"}
print(f"| workload ({sys.argv[2]} s each) | fio rbd (ceiling) | hrt rbd LUN | tgt rbd LUN | hrt/tgt | hrt/ceiling |")
print("|---|---|---|---|---|---|")
for w in ["randread", "randwrite", "read", "write"]:
    c, h, t = r[w]["ceiling"], r[w]["hrt"], r[w]["tgt"]
    unit = (lambda v: f"{v[0]:.0f} IOPS") if w.startswith("rand") else (lambda v: f"{v[1]:.0f} MiB/s")
    print(f"| {names[w]} | {unit(c)} | {unit(h)} | {unit(t)} | {h[0]/t[0]:.2f} | {h[0]/c[0]:.2f} |")
PY
