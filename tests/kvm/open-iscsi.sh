#!/bin/bash
# Linux's own initiator against hrt: boots a real kernel with ../shared/tools/kvm-rig,
# runs `hrt serve` (the Release build of this checkout) and open-iscsi in the same guest
# (the guest has only lo), then discovery, login, mkfs.ext4, mount, write, remount with
# the page cache dropped, verify, logout. Prints CHECK-HRT-ISCSI: PASS on success.
# Takes a few minutes under TCG. Needs: dotnet build runtime -c Release; open-iscsi.
# Run: tests/kvm/open-iscsi.sh   (KVM_RIG=path/to/kvm-run to override)
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
rig=${KVM_RIG:-$repo/../../shared/tools/kvm-rig/kvm-run}
[ -x "$rig" ] || rig=/work/shared/tools/kvm-rig/kvm-run
hrt=$repo/runtime/bin/Release/net10.0/hrt
[ -x "$hrt" ] || { echo "build first: dotnet build runtime -c Release" >&2; exit 2; }
exec "$rig" --timeout 900 --mem 2G --env HRT="$hrt" -- '
set -euo pipefail
IQN=iqn.2026-11.org.handler-runtime:default
step() { echo; echo "### [$(cut -d" " -f1 /proc/uptime)s] $*"; }
mkdir -p /tmp/hrt/state /tmp/hrt/log
cat > /tmp/hrt/hrt.json <<JSON
{ "logLevel": "info",
  "iscsi": { "portals": [ "127.0.0.1:3260" ] },
  "targets": [ { "name": "$IQN", "initiators": [] } ],
  "luns": [ { "name": "disk0", "cfgstring": "file//tmp/hrt/disk0.img", "size": "256M", "lun": 0 } ] }
JSON
step "start hrt serve"
$HRT serve --config /tmp/hrt/hrt.json --control /tmp/hrt/hrt.sock --state-dir /tmp/hrt/state --log-dir /tmp/hrt/log > /tmp/hrt/serve.out 2>&1 &
HRT_PID=$!
for i in $(seq 600); do $HRT status --control /tmp/hrt/hrt.sock >/dev/null 2>&1 && break; sleep 0.2; done
$HRT status --control /tmp/hrt/hrt.sock | cat
ss -ltn | grep 3260

step "iscsid, discovery, login"
modprobe iscsi_tcp
iscsid
sleep 0.5
iscsiadm -m discovery -t st -p 127.0.0.1
iscsiadm -m node -T "$IQN" -p 127.0.0.1:3260 --login
DEV=
for i in $(seq 150); do
    for b in /sys/class/iscsi_session/session*/device/target*/*/block/*; do
        [ -e "$b" ] && DEV=/dev/${b##*/} && break 2
    done
    sleep 0.2
done
[ -n "$DEV" ] || { echo "no iSCSI disk appeared"; dmesg | tail -30; cat /tmp/hrt/serve.out; exit 1; }
step "new iSCSI disk: $DEV"
iscsiadm -m session -P 1 | sed -n "1,25p"
lsblk -S -o NAME,HCTL,TYPE,VENDOR,MODEL,REV,TRAN
step "hrt ls while logged in"
$HRT ls --control /tmp/hrt/hrt.sock | cat

step "mkfs.ext4 $DEV, mount, write 32 MiB"
mkfs.ext4 -q -F "$DEV"
mkdir -p /mnt/iscsi
mount "$DEV" /mnt/iscsi
dd if=/dev/urandom of=/mnt/iscsi/blob bs=1M count=32 status=none
W=$(sha256sum < /mnt/iscsi/blob)
echo "written : $W"
df -h /mnt/iscsi
umount /mnt/iscsi
echo 3 > /proc/sys/vm/drop_caches
step "remount and verify"
mount "$DEV" /mnt/iscsi
R=$(sha256sum < /mnt/iscsi/blob)
echo "read    : $R"
umount /mnt/iscsi
[ "$W" = "$R" ] && echo "checksum MATCH" || { echo "checksum MISMATCH"; exit 1; }

step "logout"
iscsiadm -m node -T "$IQN" -p 127.0.0.1:3260 --logout
sleep 0.5
lsblk
echo; echo "kernel log (iscsi/sd):"; dmesg | grep -E "scsi|sd |iscsi|EXT4" | tail -15
echo; echo "hrt log (iSCSI):"; grep -E "iSCSI" /tmp/hrt/serve.out | tail -12
kill $HRT_PID; wait $HRT_PID || true
echo "CHECK-HRT-ISCSI: PASS"
'
