#!/usr/bin/env bash
# hrt against Debian's tcmu-runner 1.5.4 as the TCMU daemon of Linux's LIO, side by side in one
# kvm-rig guest (../shared/tools/kvm-rig: Debian's 6.1 kernel, target_core_user, tcm_loop). Both
# serve the same kind of backing, a qcow2 image (tcmu-runner has no plain file handler; its
# qcow handler is the one that serves a disk from a file), prefilled so every cluster exists,
# with emulate_write_cache=1 for both; then the same fio jobs (direct, libaio) run on the
# tcm_loop disk. Prints a markdown table of IOPS, bandwidth and the daemon's CPU time per I/O,
# with hrt/tcmu-runner ratios, and writes it to $BENCH_OUT/tcmu.md and tcmu.json.
#
# The guest runs under TCG here (10-20x slower than native, sharing the host's cores), so the
# absolute figures are small; the ratios are what to read, and only with the same host load.
# Settings:
#   BENCH_ROUNDS=1       rounds of A B (hrt, tcmu-runner); medians are reported
#   BENCH_SECONDS=8      duration of each fio job
#   BENCH_OUT=bench/results
#   BENCH_NO_BUILD=1     use the hrt already built in Release
#   BENCH_WITH_NOVEC=    1: also run hrt with DOTNET_EnableHWIntrinsic=0 (a probe of TCG's cost of
#                        emulating vector instructions), shown apart
#   BENCH_WITH_FILE=     1: also run hrt's file handler on a raw copy of the image: not the same
#                        backing as the peer's, shown apart, to tell the fabric's cost from qcow's
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
rounds=${BENCH_ROUNDS:-1}
seconds=${BENCH_SECONDS:-8}
out=${BENCH_OUT:-$repo/bench/results}
mkdir -p "$out"
out=$(cd "$out" && pwd)
rig=${KVM_RIG:-$repo/../../shared/tools/kvm-rig/kvm-run}
[ -x "$rig" ] || rig=/work/shared/tools/kvm-rig/kvm-run

if [ "$(id -u)" -ne 0 ]; then
  echo "bench/tcmu.sh: run as root (missing packages are installed with apt-get)" >&2
  exit 2
fi
need=()
for pkg in tcmu-runner fio qemu-utils qemu-system-x86 busybox-static kmod xz-utils dbus python3; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
  echo "bench/tcmu.sh: installing ${need[*]}" >&2
  apt-get update -q >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${need[@]}" >&2
fi
if [ -z "${BENCH_NO_BUILD:-}" ]; then
  dotnet build HandlerRuntime.sln -c Release -nologo -v q >&2
fi
hrt=$repo/runtime/bin/Release/net10.0/hrt
[ -x "$hrt" ] || { echo "bench/tcmu.sh: $hrt is missing; build it (dotnet build HandlerRuntime.sln -c Release)" >&2; exit 2; }
rm -f "$out/tcmu-raw.txt"

"$rig" --timeout 1800 --mem 3G --cpus 2 --rw "$out" --env HRT="$hrt" --env REPO="$repo" --env OUT="$out" \
       --env ROUNDS="$rounds" --env SECONDS_PER_JOB="$seconds" --env WITH_FILE="${BENCH_WITH_FILE:-}" --env WITH_NOVEC="${BENCH_WITH_NOVEC:-}" -- '
set -euo pipefail
C=/sys/kernel/config/target
log() { echo "bench: [$(cut -d" " -f1 /proc/uptime)s] $*" >&2; }
modprobe target_core_user
modprobe tcm_loop
cp $REPO/conf/org.kernel.TCMUService1.conf /etc/dbus-1/system.d/
mkdir -p /run/dbus /tmp/hrt/state /tmp/hrt/log /tmp/tcmu-log
dbus-daemon --system --fork
echo "{ \"iscsi\": { \"portals\": [ \"127.0.0.1:3260\" ] } }" > /tmp/hrt/hrt.json
qemu-img create -q -f qcow2 /tmp/base.qcow2 256M
qemu-io -f qcow2 -c "write -P 0x5a 0 256M" /tmp/base.qcow2 > /dev/null   # every cluster allocated: steady-state I/O
T=$C/loopback/naa.5001405000000009/tpgt_1

cpu_ticks() { awk "{print \$14 + \$15}" /proc/$1/stat; }
start_daemon() { # name -> PID
    case $1 in
    hrt|hrt-file|hrt-novec)
        # A probe of TCG itself: hrt-novec runs without the vector paths (AVX-512, AVX2 on -cpu max)
        # that .NET takes in its span helpers, which TCG emulates.
        [ $1 = hrt-novec ] && export DOTNET_EnableHWIntrinsic=0
        $HRT serve --config /tmp/hrt/hrt.json --control /tmp/hrt/hrt.sock --state-dir /tmp/hrt/state --log-dir /tmp/hrt/log > /tmp/hrt/serve.out 2>&1 &
        PID=$!
        unset DOTNET_EnableHWIntrinsic
        for i in $(seq 1200); do grep -q "hrt ready" /tmp/hrt/serve.out && return; sleep 0.1; done
        cat /tmp/hrt/serve.out >&2; exit 1 ;;
    tcmu-runner)
        tcmu-runner --tcmu-log-dir /tmp/tcmu-log > /tmp/tcmu-log/stdout 2>&1 &
        PID=$!
        # ready once it owns its D-Bus name (it sets up netlink first)
        for i in $(seq 600); do dbus-send --system --print-reply --dest=org.freedesktop.DBus /org/freedesktop/DBus org.freedesktop.DBus.NameHasOwner string:org.kernel.TCMUService1 2>/dev/null | grep -q "boolean true" && return; sleep 0.1; done
        cat /tmp/tcmu-log/* >&2; exit 1 ;;
    esac
}
stop_daemon() { kill -TERM $PID; wait $PID || true; }

run_round() { # daemon round
    local d=$1 r=$2
    log "round $r: $d"
    cp /tmp/base.qcow2 /tmp/bench.qcow2
    start_daemon $d
    D=$C/core/user_5/bench
    mkdir -p $D
    if [ $d = hrt-file ]; then
        qemu-img convert -O raw /tmp/bench.qcow2 /tmp/bench.raw
        echo -n dev_config=file//tmp/bench.raw > $D/control
    else
        echo -n dev_config=qcow//tmp/bench.qcow2 > $D/control
    fi
    echo -n dev_size=268435456 > $D/control
    echo -n 1 > $D/enable
    # tcmu-runner'"'"'s qcow handler turns the write cache on itself (and refuses the reconfig); hrt follows the attribute
    [ $d != tcmu-runner ] && echo 1 > $D/attrib/emulate_write_cache
    mkdir -p $T/lun/lun_0
    ln -s $D $T/lun/lun_0/bench
    DEV=
    for i in $(seq 300); do for b in /sys/bus/scsi/devices/*:0:1:0/block/*; do [ -e "$b" ] && DEV=${b##*/} && break 2; done; sleep 0.1; done
    [ -n "$DEV" ] || { echo "no disk for $d" >&2; exit 1; }
    for i in 1 2 3 4 5 6; do sg_turs /dev/$DEV >/dev/null 2>&1 && break; done
    # Not measured: the first commands of a .NET process run unoptimized code until the JIT has
    # tiered up, and under TCG that background JIT alone takes a CPU for tens of seconds. Warm up
    # with the jobs themselves, then wait (at most 90 s) until the daemon is idle: under 5% of a CPU.
    for w in "randrw 4k 8" "rw 1M 4"; do
        set -- $w
        fio --name=warm --filename=/dev/$DEV --direct=1 --ioengine=libaio --rw=$1 --bs=$2 --iodepth=$3 --size=256M \
            --time_based --runtime=6 --output=/dev/null
    done
    local hz=$(getconf CLK_TCK)
    for i in $(seq 45); do
        local a=$(cpu_ticks $PID); sleep 2; local b=$(cpu_ticks $PID)
        [ $(( (b - a) * 100 / (2 * hz) )) -lt 5 ] && break
    done
    log "$d idle after warm-up ($((b - a)) ticks in 2 s)"
    for job in "randread 4k 1" "randread 4k 16" "randwrite 4k 16" "read 1M 4" "write 1M 4"; do
        set -- $job
        local before=$(cpu_ticks $PID)
        fio --name=b --filename=/dev/$DEV --direct=1 --ioengine=libaio --rw=$1 --bs=$2 --iodepth=$3 --size=256M \
            --time_based --runtime=$SECONDS_PER_JOB --ramp_time=1 --output-format=json --output=/tmp/fio.json
        local after=$(cpu_ticks $PID)
        python3 - "$d" "$r" "$1 $2 QD$3" "$((after - before))" <<PY >> $OUT/tcmu-raw.txt
import json, sys, os
j = json.load(open("/tmp/fio.json"))["jobs"][0]
side = j["read"] if j["read"]["io_bytes"] > 0 else j["write"]
ios = side["total_ios"]
cpu_us = int(sys.argv[4]) * 1e6 / os.sysconf("SC_CLK_TCK")
print(json.dumps({"daemon": sys.argv[1], "round": int(sys.argv[2]), "job": sys.argv[3], "iops": side["iops"], "bw_kib": side["bw"],
                  "lat_us": side["lat_ns"]["mean"] / 1000, "cpu_us_per_io": cpu_us / max(1, ios)}))
PY
        log "$d $job: $(tail -1 $OUT/tcmu-raw.txt)"
    done
    rm $T/lun/lun_0/bench
    rmdir $T/lun/lun_0
    rmdir $D
    stop_daemon
}
mkdir -p $T
echo -n naa.500140500000000a > $T/nexus
for r in $(seq $ROUNDS); do
    run_round hrt $r
    run_round tcmu-runner $r
    if [ -n "$WITH_NOVEC" ]; then run_round hrt-novec $r; fi
    if [ -n "$WITH_FILE" ]; then run_round hrt-file $r; fi
done
'

python3 - "$out" <<'PY'
import json, statistics, sys, os
out = sys.argv[1]
rows = [json.loads(l) for l in open(os.path.join(out, "tcmu-raw.txt"))]
jobs = list(dict.fromkeys(r["job"] for r in rows))
def med(d, j, k):
    return statistics.median(r[k] for r in rows if r["daemon"] == d and r["job"] == j)
table = ["| fio job (qcow2 image, tcm_loop disk) | hrt IOPS | tcmu-runner IOPS | IOPS ratio hrt/tcmu-runner | hrt CPU us/IO | tcmu-runner CPU us/IO | CPU ratio |",
         "|---|---:|---:|---:|---:|---:|---:|"]
result = []
for j in jobs:
    h, t = med("hrt", j, "iops"), med("tcmu-runner", j, "iops")
    hc, tc = med("hrt", j, "cpu_us_per_io"), med("tcmu-runner", j, "cpu_us_per_io")
    table.append(f"| {j} | {h:.0f} | {t:.0f} | {h / t:.2f}x | {hc:.0f} | {tc:.0f} | {hc / tc:.2f}x |")
    result.append({"job": j, "hrt_iops": h, "tcmu_runner_iops": t, "iops_ratio": h / t, "hrt_cpu_us_per_io": hc, "tcmu_runner_cpu_us_per_io": tc, "cpu_ratio": hc / tc})
if any(r["daemon"] == "hrt-novec" for r in rows):
    table += ["", "| fio job, hrt with DOTNET_EnableHWIntrinsic=0 (no emulated vector code) | IOPS | IOPS ratio vs tcmu-runner | CPU us/IO | CPU ratio |", "|---|---:|---:|---:|---:|"]
    for j in jobs:
        n, t = med("hrt-novec", j, "iops"), med("tcmu-runner", j, "iops")
        nc, tc = med("hrt-novec", j, "cpu_us_per_io"), med("tcmu-runner", j, "cpu_us_per_io")
        table.append(f"| {j} | {n:.0f} | {n / t:.2f}x | {nc:.0f} | {nc / tc:.2f}x |")
        result.append({"job": j, "hrt_novec_iops": n, "hrt_novec_iops_ratio": n / t, "hrt_novec_cpu_us_per_io": nc, "hrt_novec_cpu_ratio": nc / tc})
if any(r["daemon"] == "hrt-file" for r in rows):
    table += ["", "| fio job, hrt user:file on a raw copy (not the peer's backing) | IOPS | vs tcmu-runner qcow | CPU us/IO |", "|---|---:|---:|---:|"]
    for j in jobs:
        f, t = med("hrt-file", j, "iops"), med("tcmu-runner", j, "iops")
        table.append(f"| {j} | {f:.0f} | {f / t:.2f}x | {med('hrt-file', j, 'cpu_us_per_io'):.0f} |")
        result.append({"job": j, "hrt_file_iops": f, "hrt_file_cpu_us_per_io": med("hrt-file", j, "cpu_us_per_io")})
text = "\n".join(table)
print(text)
open(os.path.join(out, "tcmu.md"), "w").write(text + "\n")
json.dump(result, open(os.path.join(out, "tcmu.json"), "w"), indent=2)
PY
