#!/bin/bash
# Linux's zoned block layer against a zbc LUN: boots a real kernel with ../shared/tools/kvm-rig,
# runs `hrt serve` with a host-managed zbc LUN and open-iscsi in the same guest, and checks
# that sd_zbc accepts the disk (queue/zoned = host-managed), that blkzone reports its zones,
# that a direct write advances a write pointer, that a write off the pointer fails, and that
# a reset empties the zone. Prints CHECK-HRT-ZONED: PASS on success.
# Takes a few minutes under TCG. Needs: dotnet build runtime -c Release; open-iscsi.
. "$(dirname "$0")/lib/host.sh"
kvm_guest --mem 2G -- '
IQN=iqn.2026-11.org.handler-runtime:default
cat > /tmp/hrt/hrt.json <<JSON
{ "iscsi": { "portals": [ "127.0.0.1:3260" ] },
  "luns": [ { "name": "zoned", "cfgstring": "zbc/model-HM/zsize-4/conv-2@/tmp/hrt/zoned.raw", "size": "64M", "lun": 0 } ] }
JSON
step "start hrt serve with a host-managed zbc LUN (16 zones of 4 MiB, 2 conventional)"
start_hrt

step "iscsid, discovery, login"
iscsi_login "$IQN"
for i in $(seq 50); do [ "$(cat /sys/block/$DEV/queue/nr_zones 2>/dev/null || echo 0)" != 0 ] && break; sleep 0.2; done
step "/dev/$DEV as Linux sees it"
echo "zoned=$(cat /sys/block/$DEV/queue/zoned) nr_zones=$(cat /sys/block/$DEV/queue/nr_zones) chunk_sectors=$(cat /sys/block/$DEV/queue/chunk_sectors)"
dmesg | grep -i -E "sd .*(zone|host-managed)" | tail -5 || true
[ "$(cat /sys/block/$DEV/queue/zoned)" = host-managed ] || fail "sd_zbc did not accept the disk"
[ "$(cat /sys/block/$DEV/queue/nr_zones)" = 16 ]

step "blkzone report"
blkzone report /dev/$DEV | head -4
Z=$(( 2 * 8192 ))   # first sequential zone, in 512-byte sectors
step "direct 1 MiB write at the write pointer of zone 2"
dd if=/dev/urandom of=/tmp/data bs=1M count=1 status=none
dd if=/tmp/data of=/dev/$DEV bs=1M seek=$(( Z * 512 / 1048576 )) count=1 oflag=direct status=none
blkzone report -o $Z -c 1 /dev/$DEV
blkzone report -o $Z -c 1 /dev/$DEV | grep -q "wptr 0x000800"
cmp <(dd if=/dev/$DEV bs=1M skip=$(( Z * 512 / 1048576 )) count=1 iflag=direct status=none) /tmp/data
step "a write off the write pointer is refused"
if dd if=/tmp/data of=/dev/$DEV bs=4k seek=$(( (Z * 512 + 4 * 1048576 - 8192) / 4096 )) count=1 oflag=direct status=none 2>/tmp/err; then
    fail "write off the pointer succeeded"
fi
cat /tmp/err
step "reset the zone"
blkzone reset -o $Z -c 1 /dev/$DEV
blkzone report -o $Z -c 1 /dev/$DEV
blkzone report -o $Z -c 1 /dev/$DEV | grep -q "wptr 0x000000"
iscsiadm -m node -T "$IQN" -p 127.0.0.1:3260 --logout >/dev/null
echo
echo "CHECK-HRT-ZONED: PASS"
'
