#!/bin/bash
# Linux's own NBD client against hrt: boots a real kernel with ../shared/tools/kvm-rig, runs
# `hrt serve` (the Release build of this checkout) with a file LUN and nbd-client in the same
# guest (the guest has only lo), then nbd-client -N (GO, then the kernel's transmission:
# simple replies only, many requests in flight, FLUSH, FUA, TRIM), mkfs.ext4, mount, write,
# fstrim, remount with the page cache dropped, verify, nbd-client -d, and checks that hrt saw
# the connection and that it ended. Prints CHECK-HRT-NBD: PASS on success.
# Takes a few minutes under TCG. Needs: dotnet build runtime -c Release; nbd-client.
# Run: tests/kvm/nbd.sh   (KVM_RIG=path/to/kvm-run to override)
. "$(dirname "$0")/lib/host.sh"
kvm_guest --mem 2G -- '
cat > /tmp/hrt/hrt.json <<JSON
{ "logLevel": "info",
  "iscsi": { "portals": [ "127.0.0.1:3260" ] },
  "nbd": { "listen": [ "127.0.0.1:10809" ] },
  "luns": [ { "name": "disk0", "cfgstring": "file//tmp/hrt/disk0.img", "size": "256M", "lun": 0 } ] }
JSON
step "start hrt serve"
start_hrt
ss -ltn | grep 10809

step "modprobe nbd, nbd-client 127.0.0.1 10809 /dev/nbd0 -N disk0"
modprobe nbd
nbd-client 127.0.0.1 10809 /dev/nbd0 -N disk0
for i in $(seq 100); do [ "$(blockdev --getsize64 /dev/nbd0 2>/dev/null || echo 0)" != 0 ] && break; sleep 0.1; done
SIZE=$(blockdev --getsize64 /dev/nbd0)
echo "size: $SIZE"
[ "$SIZE" = 268435456 ] || fail "/dev/nbd0 is $SIZE bytes, not 256 MiB"
echo "write cache: $(cat /sys/block/nbd0/queue/write_cache)  discard max: $(cat /sys/block/nbd0/queue/discard_max_bytes)"
grep -q "write back" /sys/block/nbd0/queue/write_cache || fail "no volatile cache: SEND_FLUSH was not taken"
[ "$(cat /sys/block/nbd0/queue/discard_max_bytes)" != 0 ] || fail "no discard: SEND_TRIM was not taken"
step "hrt ls while connected"
$HRT ls --json --control /tmp/hrt/hrt.sock > /tmp/hrt/ls.json
grep -A12 "\"sessions\"" /tmp/hrt/ls.json | head -24
grep -q "\"export\": \"disk0\"" /tmp/hrt/ls.json || fail "hrt ls does not show the connection"

step "mkfs.ext4 /dev/nbd0, mount, write 32 MiB, fstrim"
mkfs.ext4 -q -F /dev/nbd0
mkdir -p /mnt/nbd
mount /dev/nbd0 /mnt/nbd
dd if=/dev/urandom of=/mnt/nbd/blob bs=1M count=32 status=none
dd if=/dev/urandom of=/mnt/nbd/scratch bs=1M count=16 status=none
sync
rm /mnt/nbd/scratch
fstrim -v /mnt/nbd
W=$(sha256sum < /mnt/nbd/blob)
echo "written : $W"
df -h /mnt/nbd
umount /mnt/nbd
echo 3 > /proc/sys/vm/drop_caches
step "remount and verify"
mount /dev/nbd0 /mnt/nbd
R=$(sha256sum < /mnt/nbd/blob)
echo "read    : $R"
umount /mnt/nbd
[ "$W" = "$R" ] && echo "checksum MATCH" || fail "checksum MISMATCH"

step "nbd-client -d /dev/nbd0"
nbd-client -d /dev/nbd0
for i in $(seq 300); do grep -q "connection ended" /tmp/hrt/serve.out && break; sleep 0.2; done
$HRT status --json --control /tmp/hrt/hrt.sock | grep "\"sessions\": 0" || fail "the connection did not end"
echo; echo "kernel log (nbd/EXT4):"; dmesg | grep -E "nbd|EXT4" | tail -10
echo; echo "hrt log (NBD):"; grep -E "NBD" /tmp/hrt/serve.out | tail -8
if grep -E "protocol error|refused with" /tmp/hrt/serve.out; then fail "hrt logged protocol errors"; fi
kill $HRT_PID; wait $HRT_PID || true
echo "CHECK-HRT-NBD: PASS"
'
