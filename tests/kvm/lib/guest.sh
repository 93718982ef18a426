# Sourced first by every kvm guest script (tests/kvm/lib/host.sh arranges it): the helpers the
# kernel tests share. HRT is the hrt executable, REPO the repository, both read-only here.
set -euo pipefail
CTL="--control /tmp/hrt/hrt.sock"
mkdir -p /tmp/hrt/state /tmp/hrt/log

step() { echo; echo "### [$(cut -d" " -f1 /proc/uptime)s] $*"; }

# Prints why, the end of hrt's log and of the kernel's, and fails the test.
fail() {
    echo "FAILED: $*"
    echo "--- hrt log (last 40 lines):"; tail -40 /tmp/hrt/serve.out 2>/dev/null || true
    echo "--- dmesg:"; dmesg | tail -25
    exit 1
}

# The control API over the daemon unix socket, through curl where a check is not about the CLI
# (a .NET process start costs seconds under TCG).
api() { curl -sf --unix-socket /tmp/hrt/hrt.sock "$@"; }

# Starts `hrt serve` on /tmp/hrt/hrt.json (appending to /tmp/hrt/serve.out, so a restart keeps
# the earlier log) and returns once this start has logged "hrt ready"; HRT_PID is its pid.
start_hrt() {
    local ready
    ready=$(grep -c "hrt ready" /tmp/hrt/serve.out 2>/dev/null || true)
    $HRT serve --config /tmp/hrt/hrt.json $CTL --state-dir /tmp/hrt/state --log-dir /tmp/hrt/log "$@" >> /tmp/hrt/serve.out 2>&1 &
    HRT_PID=$!
    for i in $(seq 1500); do
        [ "$(grep -c "hrt ready" /tmp/hrt/serve.out || true)" -gt "${ready:-0}" ] && return 0
        kill -0 $HRT_PID 2>/dev/null || break
        sleep 0.2
    done
    fail "hrt did not start"
}

# Logs open-iscsi in to target $1 on 127.0.0.1:3260 and sets DEV to the disk's name (sdX).
iscsi_login() {
    modprobe iscsi_tcp
    pgrep -x iscsid >/dev/null || iscsid
    sleep 0.5
    iscsiadm -m discovery -t st -p 127.0.0.1 >/dev/null
    iscsiadm -m node -T "$1" -p 127.0.0.1:3260 --login >/dev/null
    DEV=
    for i in $(seq 150); do
        for b in /sys/class/iscsi_session/session*/device/target*/*/block/*; do
            [ -e "$b" ] && DEV=${b##*/} && return 0
        done
        sleep 0.2
    done
    fail "no iSCSI disk appeared"
}
