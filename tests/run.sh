#!/usr/bin/env bash
# The one test command: installs what the tests need on a fresh Debian 12 machine,
# builds, and runs every test project. Exit status is the tests'.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
# Kernel tests (tests/kvm/*.sh) boot Debian's kernel in ../shared/tools/kvm-rig and need its
# prerequisites and the guest-side tools they drive; HRT_SKIP_KVM=1 skips them, saying so.
# NBD tests: libnbd's tools and Python module (nbdinfo, nbdsh, nbdcopy), nbdkit and qemu-nbd as
# reference servers, fio's nbd engine, openssl for test certificates.
pkgs=(libiscsi-bin qemu-utils qemu-block-extra libzstd1 nbdkit libnbd-bin python3-libnbd fio openssl)
if [ -z "${HRT_SKIP_KVM:-}" ]; then
  pkgs+=(qemu-system-x86 busybox-static kmod xz-utils open-iscsi util-linux e2fsprogs nbd-client)
  # tests/kvm/tcmu.sh: LIO's tools and initiator-side checks (tcmu-runner for bench/tcmu.sh's peer)
  pkgs+=(targetcli-fb python3-rtslib-fb python3-gi sg3-utils dbus curl tcmu-runner)
fi
for pkg in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
  echo "tests/run.sh: installing ${need[*]}"
  if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${need[@]}"
fi

# The rbd tests' Ceph cluster: ceph-mini's own installer apt-installs Ceph 16 (mon, mgr, osd,
# librbd); the tests bring the cluster up and down themselves and skip, saying why, without it.
ceph_mini=${CEPH_MINI_TOOLS:-}
for t in ../shared/tools/ceph-mini ../../shared/tools/ceph-mini /work/shared/tools/ceph-mini; do
  if [ -z "$ceph_mini" ] && [ -x "$t/ceph-mini-install" ]; then ceph_mini=$(cd "$t" && pwd); fi
done
if [ -n "$ceph_mini" ]; then
  export CEPH_MINI_TOOLS=$ceph_mini
  "$ceph_mini/ceph-mini-install" || echo "tests/run.sh: ceph-mini-install failed; the rbd tests will skip and say why"
else
  echo "tests/run.sh: ceph-mini not found (set CEPH_MINI_TOOLS); the rbd tests will skip and say why"
fi

if ! command -v dotnet >/dev/null; then
  echo "tests/run.sh: the .NET 10 SDK is required (https://dot.net/download)" >&2
  exit 2
fi

dotnet build HandlerRuntime.sln -c Release -nologo -v minimal
rc=0
dotnet test HandlerRuntime.sln -c Release --no-build -nologo -v minimal \
  --logger "console;verbosity=normal" "$@" || rc=$?

# Linux's own initiators and kernel modules against this build, one guest boot per script.
if [ -n "${HRT_SKIP_KVM:-}" ]; then
  echo "tests/run.sh: SKIPPED the kernel tests (tests/kvm/*.sh): HRT_SKIP_KVM is set"
elif [ $# -gt 0 ]; then
  echo "tests/run.sh: SKIPPED the kernel tests (tests/kvm/*.sh): arguments were given to dotnet test"
else
  for t in tests/kvm/*.sh; do
    echo "tests/run.sh: kernel test $t"
    start=$SECONDS
    if "$t" > "/tmp/hrt-kvm-$(basename "$t" .sh).log" 2>&1; then
      echo "tests/run.sh: PASSED $t ($((SECONDS - start)) s)"
    else
      echo "tests/run.sh: FAILED $t ($((SECONDS - start)) s); its output:"
      cat "/tmp/hrt-kvm-$(basename "$t" .sh).log"
      rc=1
    fi
  done
fi
exit $rc
