# Sourced by each tests/kvm/*.sh on the host: finds the kvm rig and the Release build of hrt,
# and runs a guest script with guest.sh (this folder) sourced before it.
#   kvm_guest [--mem 2G] [kvm-run options...] -- 'guest script'
# The guest sees this machine's files read-only, so guest.sh is read from the repository itself.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)
rig=${KVM_RIG:-$repo/../../shared/tools/kvm-rig/kvm-run}
[ -x "$rig" ] || rig=/work/shared/tools/kvm-rig/kvm-run
hrt=$repo/runtime/bin/Release/net10.0/hrt
[ -x "$hrt" ] || { echo "build first: dotnet build HandlerRuntime.sln -c Release" >&2; exit 2; }

kvm_guest() {
    local options=()
    while [ $# -gt 0 ] && [ "$1" != -- ]; do options+=("$1"); shift; done
    shift
    exec "$rig" --timeout 900 "${options[@]}" --env HRT="$hrt" --env REPO="$repo" -- ". \"\$REPO/tests/kvm/lib/guest.sh\"
$1"
}
