#!/usr/bin/env bash
# The one test command: installs what the tests need on a fresh Debian 12 machine,
# builds, and runs every test project. Exit status is the tests'.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
for pkg in libiscsi-bin qemu-utils qemu-block-extra libzstd1; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
  echo "tests/run.sh: installing ${need[*]}"
  if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${need[@]}"
fi

if ! command -v dotnet >/dev/null; then
  echo "tests/run.sh: the .NET 10 SDK is required (https://dot.net/download)" >&2
  exit 2
fi

dotnet build HandlerRuntime.sln -c Release -nologo -v minimal
dotnet test HandlerRuntime.sln -c Release --no-build -nologo -v minimal \
  --logger "console;verbosity=normal" "$@"
