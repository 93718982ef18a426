#!/bin/bash
# hrt as Linux LIO's TCMU daemon (a drop-in tcmu-runner): boots a real kernel with
# ../shared/tools/kvm-rig and, in one guest, loads target_core_user and tcm_loop, starts the
# system D-Bus and `hrt serve`, and checks:
#   - a user: device enabled before hrt started is reattached (block_dev, reset_ring) and served;
#   - targetcli lists user:file, user:ram, user:qcow, user:zbc from hrt's D-Bus service, refuses a
#     bad cfgstring through hrt's CheckConfig, and creates one backstore of each, served by hrt
#     while it runs; tcm_loop makes them /dev/sdX;
#   - mkfs.ext4 + fsck clean (file), fio with verify (ram, qcow), sg_inq/sg_vpd/sg_readcap,
#     blkzone report and a write at the write pointer (zbc);
#   - ring wrap and qfull with cmd_ring_size_mb=1 and max_data_area_mb=4;
#   - log level debug_scsi_cmd logs a TCMU device's CDBs;
#   - a dev_size reconfig seen by the initiator after a rescan;
#   - tmr_notification: sg_reset's LUN reset reaches the SCSI core;
#   - kill -9 of hrt under fio, then a restart: fio finishes without a verify error;
#   - hrt ls / status list the devices; SIGTERM stops cleanly.
# Prints CHECK-HRT-TCMU: PASS on success. Needs: dotnet build HandlerRuntime.sln -c Release;
# targetcli-fb, python3-rtslib-fb, sg3-utils, fio, dbus, qemu-utils, util-linux, e2fsprogs.
. "$(dirname "$0")/lib/host.sh"
kvm_guest --mem 3G -- '
C=/sys/kernel/config/target
echo "{ \"iscsi\": { \"portals\": [ \"127.0.0.1:3260\" ] } }" > /tmp/hrt/hrt.json
# Clears the unit attentions LIO queued while LUNs were added (REPORTED LUNS DATA HAS CHANGED).
settle() { for i in 1 2 3 4 5 6 7 8; do sg_turs /dev/$1 >/dev/null 2>&1 && return 0; done; fail "/dev/$1 is not ready"; }
# /dev/sdX of loopback LUN $1 (tcm_loop: target 1, channel 0)
lundev() {
    for i in $(seq 300); do
        for b in /sys/bus/scsi/devices/*:0:1:$1/block/*; do [ -e "$b" ] && { echo ${b##*/}; return 0; }; done
        sleep 0.1
    done
    return 1
}
fio_verify() { # device, extra args...
    local dev=$1; shift
    fio --name=verify --filename=/dev/$dev --direct=1 --ioengine=libaio --verify=crc32c --do_verify=1 --verify_fatal=1 \
        --output=/tmp/fio.out "$@" || { cat /tmp/fio.out; fail "fio on $dev"; }
    grep -E "err= *0" /tmp/fio.out >/dev/null || { cat /tmp/fio.out; fail "fio on $dev reported an error"; }
    grep -E "^ +(READ|WRITE):" /tmp/fio.out
}

step "modules and the system D-Bus"
modprobe target_core_user
modprobe tcm_loop
cp $REPO/conf/org.kernel.TCMUService1.conf /etc/dbus-1/system.d/
mkdir -p /run/dbus
dbus-daemon --system --fork
echo "kernel $(uname -r); $(dbus-daemon --version | head -1)"

step "a user:file device enabled before hrt starts (configfs, cmd_time_out=0 for the crash test)"
truncate -s 64M /tmp/pre.img
P=$C/core/user_9/pre
mkdir -p $P
echo -n dev_config=file//tmp/pre.img > $P/control
echo -n dev_size=67108864 > $P/control
echo -n 1 > $P/enable
echo 0 > $P/attrib/cmd_time_out
cat /sys/class/uio/uio0/name; echo

step "hrt serve"
start_hrt
grep -E "TCMU|D-Bus" /tmp/hrt/serve.out
grep -q "TCMU user_9/pre: serving file//tmp/pre.img .*reattached" /tmp/hrt/serve.out || fail "the device enabled before start was not reattached"

step "targetcli: the user: backstores hrt serves (D-Bus), a bad cfgstring refused by hrt (CheckConfig), one backstore of each kind and a loopback target made while hrt runs"
qemu-img create -q -f qcow2 /tmp/q1.qcow2 64M
targetcli > /tmp/targetcli.out 2>&1 <<EOF || { cat /tmp/targetcli.out; fail "targetcli"; }
set global auto_save_on_exit=false
ls /backstores 1
/backstores/user:file create name=bad size=1M cfgstring=relative.img
/backstores/user:file create name=f1 size=64M cfgstring=/tmp/f1.img
/backstores/user:ram create name=r1 size=64M cfgstring=@
/backstores/user:qcow create name=q1 size=64M cfgstring=/tmp/q1.qcow2
/backstores/user:zbc create name=z1 size=64M cfgstring=model-HM/zsize-4/conv-2@/tmp/z1.raw
/loopback create naa.5001405000000001
/loopback/naa.5001405000000001/luns create /backstores/user:file/f1 0
/loopback/naa.5001405000000001/luns create /backstores/user:ram/r1 1
/loopback/naa.5001405000000001/luns create /backstores/user:qcow/q1 2
/loopback/naa.5001405000000001/luns create /backstores/user:zbc/z1 3
ls /
EOF
grep -E "o- user:|cfgstring|Created|o- lun" /tmp/targetcli.out | head -30
for s in file ram qcow zbc; do grep -q "o- user:$s " /tmp/targetcli.out || fail "targetcli does not list user:$s"; done
grep -q "cfgstring invalid: .*not an absolute path" /tmp/targetcli.out || fail "targetcli accepted a relative path"
! ls -d $C/core/user_*/bad >/dev/null 2>&1 || fail "the refused backstore exists"
grep "D-Bus CheckConfig file/relative.img" /tmp/hrt/serve.out
grep -q "Created user-backed storage object z1" /tmp/targetcli.out || { cat /tmp/targetcli.out; fail "targetcli did not create the backstores"; }

step "a device made while hrt runs: cmd_ring_size_mb=1, max_data_area_mb=4, tmr_notification=1"
W=$C/core/user_9/wrap
mkdir -p $W
echo -n dev_config=ram/@ > $W/control
echo -n dev_size=67108864 > $W/control
echo -n cmd_ring_size_mb=1 > $W/control
echo -n max_data_area_mb=4 > $W/control
echo -n 1 > $W/enable
echo 1 > $W/attrib/tmr_notification
T=$C/loopback/naa.5001405000000001/tpgt_1
mkdir -p $T/lun/lun_4 $T/lun/lun_5
ln -s $P $T/lun/lun_4/pre
ln -s $W $T/lun/lun_5/wrap
F=$(lundev 0) R=$(lundev 1) Q=$(lundev 2) Z=$(lundev 3) PRE=$(lundev 4) WR=$(lundev 5) || fail "a LUN did not appear"
echo "file=/dev/$F ram=/dev/$R qcow=/dev/$Q zbc=/dev/$Z pre=/dev/$PRE wrap=/dev/$WR"
lsblk -S -o NAME,HCTL,TYPE,VENDOR,MODEL,REV,TRAN
for d in $F $R $Q $Z $PRE $WR; do settle $d; done

step "hrt status lists the TCMU devices (hrt ls runs meanwhile: a .NET start takes half a minute under TCG)"
$HRT ls $CTL > /tmp/hrtls.out 2>&1 &
LS=$!
api http://hrt/v1/status > /tmp/status.json
python3 -c "import json; s = json.load(open(\"/tmp/status.json\")); print(\"status:\", s[\"luns\"], \"LUNs,\", s[\"sessions\"], \"sessions,\", s[\"endpoints\"]); assert s[\"luns\"] == 6 and s[\"sessions\"] == 6" || fail "hrt status"

step "sg3_utils on the ram LUN"
sg_inq /dev/$R | grep -E "Vendor|Product|revision"
sg_vpd -p bl /dev/$R | grep -E "Maximum transfer|Optimal transfer"
sg_vpd -p bl /dev/$R | grep -q "Maximum transfer length: 128 blocks" || fail "VPD B0h does not report hw_max_sectors"
sg_readcap -l /dev/$R | grep -E "Last LBA|block length"
sg_readcap /dev/$R | grep -q "Device size: 67108864 bytes" || fail "READ CAPACITY"

step "mkfs.ext4 and fsck on the file LUN"
mkfs.ext4 -q -F /dev/$F
e2fsck -fn /dev/$F || fail "fsck found errors"

step "fio with verify: ram and qcow"
fio_verify $R --rw=randwrite --bs=4k --iodepth=16 --size=8M
fio_verify $Q --rw=randwrite --bs=64k --iodepth=8 --size=16M

step "hrt ls shows every TCMU device as a target with its LUN and its session"
wait $LS || { cat /tmp/hrtls.out; fail "hrt ls"; }
cat /tmp/hrtls.out
for n in f1 r1 q1 z1 pre wrap; do grep -q " $n " /tmp/hrtls.out || fail "hrt ls does not show $n"; done

step "zbc: sd_zbc sees a host-managed disk; blkzone; a write at the write pointer"
for i in $(seq 50); do [ "$(cat /sys/block/$Z/queue/nr_zones 2>/dev/null || echo 0)" != 0 ] && break; sleep 0.2; done
echo "zoned=$(cat /sys/block/$Z/queue/zoned) nr_zones=$(cat /sys/block/$Z/queue/nr_zones)"
[ "$(cat /sys/block/$Z/queue/zoned)" = host-managed ] || fail "not host-managed"
blkzone report /dev/$Z | head -4
dd if=/dev/urandom of=/tmp/zdata bs=1M count=1 status=none
dd if=/tmp/zdata of=/dev/$Z bs=1M seek=8 count=1 oflag=direct status=none
blkzone report -o 16384 -c 1 /dev/$Z | tee /tmp/zone.out
grep -q "wptr 0x000800" /tmp/zone.out || fail "the write pointer did not move"

step "ring wrap (1 MiB ring) and qfull (4 MiB data area): fio with verify"
fio_verify $WR --rw=randwrite --bs=4k --iodepth=32 --size=20M
fio_verify $WR --rw=write --bs=1M --iodepth=8 --size=32M
api http://hrt/v1/ls > /tmp/ls.json
python3 - <<PY || fail "the wrap device did not see enough commands"
import json
s = [s for t in json.load(open("/tmp/ls.json"))["targets"] for s in t["sessions"] if s["target"].endswith("/wrap")][0]
n, ring = int(s["details"]["commands"]), int(s["details"]["ring"].split()[0])
print(f"wrap device: {n} commands through a {ring}-byte ring: wrapped at least {n * 112 // ring} time(s)")
assert n * 112 > ring
PY

step "debug_scsi_cmd logs the CDBs of a TCMU device"
api -X PUT -H "Content-Type: application/json" -d "{\"level\":\"debug_scsi_cmd\"}" http://hrt/v1/log-level; echo
sg_inq /dev/$R > /dev/null
sleep 0.5
api -X PUT -H "Content-Type: application/json" -d "{\"level\":\"info\"}" http://hrt/v1/log-level; echo
grep -E "lio,user_[0-9]+/r1 LUN r1 CDB 12" /tmp/hrt/serve.out | tail -2 || fail "no INQUIRY CDB in the log"

step "dev_size reconfig of the file LUN, seen after a rescan"
FD=$(ls -d $C/core/user_*/f1)
echo 134217728 > $FD/attrib/dev_size
echo 1 > /sys/block/$F/device/rescan
sleep 1
echo "size in sectors: $(cat /sys/block/$F/size)"
[ "$(cat /sys/block/$F/size)" = 262144 ] || fail "the initiator does not see 128 MiB"
sg_readcap /dev/$F | grep "Device size"
grep "dev_size 134217728 applied" /tmp/hrt/serve.out

step "tmr_notification: sg_reset (LUN reset) reaches the SCSI core"
sg_reset -d /dev/$WR
sleep 1
grep "TCMU user_9/wrap: LOGICAL UNIT RESET" /tmp/hrt/serve.out || fail "no TMR reached hrt"
dd if=/dev/$WR of=/dev/null bs=1M count=4 iflag=direct status=none || fail "I/O after the reset"

step "kill -9 of hrt under fio, then a restart: fio finishes with its data verified"
echo 180 > /sys/block/$PRE/device/timeout
fio --name=crash --filename=/dev/$PRE --direct=1 --ioengine=libaio --rw=randwrite --bs=4k --iodepth=16 --size=48M \
    --verify=crc32c --do_verify=1 --verify_fatal=1 --output=/tmp/crash.out &
FIO=$!
# Kill once fio is well into its writes, judged by the disk own counter
# (field 5 of /sys/block/X/stat: writes completed), not by a sleep: a quiet
# machine finished 16 MiB within a fixed 4 s, a loaded one had barely begun.
W0=$(awk "{print \$5}" /sys/block/$PRE/stat)
for i in $(seq 1 600); do
    [ $(( $(awk "{print \$5}" /sys/block/$PRE/stat) - W0 )) -ge 1024 ] && break
    kill -0 $FIO 2>/dev/null || break
    sleep 0.1
done
echo "writes completed before the kill: $(( $(awk "{print \$5}" /sys/block/$PRE/stat) - W0 ))"
kill -0 $FIO || { cat /tmp/crash.out; fail "fio ended before the crash"; }
kill -9 $HRT_PID
wait $HRT_PID 2>/dev/null || true
echo "hrt killed with fio running"
start_hrt
grep -c "reattached" /tmp/hrt/serve.out
wait $FIO || { cat /tmp/crash.out; fail "fio failed across the crash"; }
grep -E "err= *0" /tmp/crash.out > /dev/null || { cat /tmp/crash.out; fail "fio reported an error"; }
grep -E "^ +(READ|WRITE):" /tmp/crash.out
dmesg | grep -ciE "sd .*(retry|reset|abort)" || true

step "SIGTERM: every device blocked, drained, released"
kill -TERM $HRT_PID
wait $HRT_PID || fail "hrt exited with $? after SIGTERM"
grep -c "no longer served (hrt stopping)" /tmp/hrt/serve.out
[ "$(grep -c "no longer served (hrt stopping)" /tmp/hrt/serve.out)" = 6 ] || fail "not every device was released"
echo
echo "CHECK-HRT-TCMU: PASS"
'
