#!/bin/bash
# Build (once) a Debian 12 arm64 root — Raspberry Pi OS Bookworm's base — for the arm64 tests, under
# qemu-user emulation. Cached: a root that was finished (its stamp file exists) is reused; a missing or
# half-built one is (re)built in a temporary folder and renamed into place, so an interrupted build never
# leaves a root that looks finished.
#
# usage (root): make-root.sh ROOT
# needs: apt-get install qemu-user-static debootstrap binfmt-support (the arm64 tests skip without them)
# The Debian mirror is this machine's own (from its apt sources), never a name written here.
set -euo pipefail
ROOT=$(realpath -m "$1")
STAMP="$ROOT/.pidetect-arm64-root"
[ -f "$STAMP" ] && exit 0
[ "$(id -u)" = 0 ] || { echo "make-root.sh: needs root" >&2; exit 2; }
for tool in debootstrap qemu-aarch64-static update-binfmts; do
    command -v "$tool" >/dev/null || { echo "make-root.sh: $tool missing (apt-get install qemu-user-static debootstrap binfmt-support)" >&2; exit 3; }
done
# arm64 binaries run through qemu-aarch64 (flags F: the interpreter is kept open, so containers use it too).
# Exit 3 = a prerequisite this machine lacks (the tests skip, saying why); anything else is a failure.
if [ ! -e /proc/sys/fs/binfmt_misc/register ]; then
    mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc 2>/dev/null || {
        echo "make-root.sh: binfmt_misc cannot be mounted here (a container without it?): no arm64 emulation" >&2; exit 3; }
fi
[ -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ] || update-binfmts --enable qemu-aarch64 || {
    echo "make-root.sh: update-binfmts --enable qemu-aarch64 failed: no arm64 emulation" >&2; exit 3; }
MIRROR=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
[ -n "$MIRROR" ] || MIRROR=$(awk '$1 == "deb" && $0 !~ /security/ {print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)
[ -n "$MIRROR" ] || { echo "make-root.sh: no Debian mirror found in this machine's apt sources" >&2; exit 3; }
BUILD="$ROOT.build.$$"
rm -rf "$BUILD"
mkdir -p "$(dirname "$ROOT")"
trap 'rm -rf "$BUILD"' EXIT
# minbase + what a Pi OS Lite system has that the tests use: systemd as PID 1, python3, ps/nsenter/setpriv
debootstrap --arch=arm64 --variant=minbase \
    --include=python3,ca-certificates,systemd,systemd-sysv,dbus,procps,util-linux,iproute2,tar \
    bookworm "$BUILD" "$MIRROR"
cp /etc/resolv.conf "$BUILD/etc/resolv.conf"
cp /etc/ssl/certs/ca-certificates.crt "$BUILD/etc/ssl/certs/ca-certificates.crt"  # this network's CA, for pip
echo "pidetect" > "$BUILD/etc/hostname"
rm -rf "$ROOT"
date -u +%FT%TZ > "$BUILD/.pidetect-arm64-root"
mv "$BUILD" "$ROOT"
trap - EXIT
