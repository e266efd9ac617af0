#!/bin/bash
# Run a command in the arm64 root under qemu-user, as on a Pi: an overlay keeps the cached root untouched
# (what the command writes goes to STATE, kept between calls), and an ARM /proc/cpuinfo is put in place —
# LiteRT's cpuinfo dies with SIGSEGV on the host's x86 one, and XNNPACK picks its kernels from it.
#
# usage (root): in-root.sh ROOT STATE CPUINFO [--bind HOST:INSIDE]... -- COMMAND [ARG]...
# QEMU_CPU (cortex-a72 for a Pi 4, cortex-a76 for a Pi 5) is handed to the emulated processes.
# Everything is mounted in a private mount namespace: nothing is left mounted on the host afterwards.
set -euo pipefail
if [ "${_IN_ROOT_INNER:-}" != 1 ]; then
    export _IN_ROOT_INNER=1
    exec unshare --mount --propagation private -- "$0" "$@"
fi
ROOT=$(realpath "$1"); STATE=$(realpath -m "$2"); CPUINFO=$(realpath "$3"); shift 3
BINDS=()
while [ $# -gt 0 ] && [ "$1" != "--" ]; do
    case "$1" in
        --bind) BINDS+=("$2"); shift 2 ;;
        *) echo "in-root.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done
[ "${1:-}" = "--" ] && shift
mkdir -p "$STATE/upper" "$STATE/work" "$STATE/merged"
M="$STATE/merged"
mount -t overlay overlay -o "lowerdir=$ROOT,upperdir=$STATE/upper,workdir=$STATE/work" "$M"
mount -t proc proc "$M/proc"
mount --bind "$CPUINFO" "$M/proc/cpuinfo"
mount --rbind /dev "$M/dev"
mount -t tmpfs tmpfs "$M/tmp"
cp /etc/resolv.conf "$M/etc/resolv.conf"
for bind in "${BINDS[@]}"; do
    mkdir -p "$M/${bind#*:}"
    mount --bind "${bind%%:*}" "$M/${bind#*:}"
done
exec chroot "$M" /usr/bin/env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root \
    LANG=C.UTF-8 QEMU_CPU="${QEMU_CPU:-max}" DEBIAN_FRONTEND=noninteractive PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_CERT=/etc/ssl/certs/ca-certificates.crt "$@"
