#!/bin/bash
# Linux's own initiator against hrt: boots a real kernel with ../shared/tools/kvm-rig,
# runs `hrt serve` (the Release build of this checkout) and open-iscsi in the same guest
# (the guest has only lo), then discovery, login, mkfs.ext4, mount, write, remount with
# the page cache dropped, verify, logout. Prints CHECK-HRT-ISCSI: PASS on success.
# Takes a few minutes under TCG. Needs: dotnet build runtime -c Release; open-iscsi.
# Run: tests/kvm/open-iscsi.sh   (KVM_RIG=path/to/kvm-run to override)
. "$(dirname "$0")/lib/host.sh"
kvm_guest --mem 2G -- '
IQN=iqn.2026-11.org.handler-runtime:default
cat > /tmp/hrt/hrt.json <<JSON
{ "logLevel": "info",
  "iscsi": { "portals": [ "127.0.0.1:3260" ] },
  "targets": [ { "name": "$IQN", "initiators": [] } ],
  "luns": [ { "name": "disk0", "cfgstring": "file//tmp/hrt/disk0.img", "size": "256M", "lun": 0 } ] }
JSON
step "start hrt serve"
start_hrt
$HRT status $CTL | cat
ss -ltn | grep 3260

step "iscsid, discovery, login"
iscsi_login "$IQN"
DEV=/dev/$DEV
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
[ "$W" = "$R" ] && echo "checksum MATCH" || fail "checksum MISMATCH"

step "logout"
iscsiadm -m node -T "$IQN" -p 127.0.0.1:3260 --logout
sleep 0.5
lsblk
echo; echo "kernel log (iscsi/sd):"; dmesg | grep -E "scsi|sd |iscsi|EXT4" | tail -15
echo; echo "hrt log (iSCSI):"; grep -E "iSCSI" /tmp/hrt/serve.out | tail -12
kill $HRT_PID; wait $HRT_PID || true
echo "CHECK-HRT-ISCSI: PASS"
'
