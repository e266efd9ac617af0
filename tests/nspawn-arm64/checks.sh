#!/bin/bash
# Runs inside the arm64 Debian 12 root booted by systemd-nspawn with a real systemd PID 1, every binary
# emulated by qemu-user (tests/test_arm64.py boots it). The whole Pi path but the camera and the screen:
# deploy/install.sh as a Pi owner runs it (apt packages, python3-systemd, the venv, the model, the unit),
# the service on a video file, its journal, READY, the watchdog and a clean stop.
# One line per check in /out/results ("PASS name" / "FAIL name: why"); details in /out/log.
. /src/tests/nspawn/lib.sh

expect arch "the container is aarch64" test "$(uname -m)" = aarch64
expect cpuinfo "an ARM /proc/cpuinfo is in place" grep -q 'CPU part' /proc/cpuinfo

# 1. the real installer, as on a Pi (its apt packages come from the Debian mirror, its wheels from PyPI)
started=$(date +%s)
if /src/deploy/install.sh --source /media/clip.avi --display none --models-from /src/models --no-start; then
    pass install
else
    fail install "deploy/install.sh exited $?"; exit 1
fi
echo "$(( $(date +%s) - started ))" > /out/install_seconds
expect python3-systemd "apt's python3-systemd installed" dpkg -s python3-systemd
expect venv-aarch64 "the venv's numpy is an aarch64 build" sh -c \
    "/opt/pidetect/venv/bin/python -c 'import numpy, platform; assert platform.machine() == \"aarch64\"'"
expect model-int8 "the derived int8 default model is there" test -s /opt/pidetect/models/mobilenet_ssd_v2_coco_quant_postprocess_int8.tflite
printf '\nloop = true\nrealtime = true\nmetrics_interval = 10\n' >> /etc/pidetect/pidetect.toml

# Emulation only (a Pi needs none of this): qemu-user translates code at run time, which needs memory that
# is writable and executable (MemoryDenyWriteExecute refuses it), and the unit's private /proc
# (ProtectProc) would show qemu the host's x86 cpuinfo again: bind the Pi's one into the unit's namespace.
mkdir -p /etc/systemd/system/pidetect.service.d
cat > /etc/systemd/system/pidetect.service.d/qemu-emulation.conf <<'CONF'
[Service]
MemoryDenyWriteExecute=no
BindReadOnlyPaths=/opt/cpuinfo:/proc/cpuinfo
CONF
systemctl daemon-reload

# 2. start: Type=notify returns once the daemon sent READY=1
start=$(date +%s%N)
systemctl start pidetect.service
end=$(date +%s%N)
echo "start to READY: $(( (end - start) / 1000000 )) ms (emulated)" > /out/ready_time
expect started "active after start (READY=1 received)" test "$(prop ActiveState)" = active
expect notify "Type=notify" test "$(prop Type)" = notify
expect journal-cat "journalctl -u pidetect EVENT=detection LABEL=cat" wait_for 240 journal_has EVENT=detection LABEL=cat
expect journal-person "journalctl -u pidetect EVENT=detection LABEL=person" wait_for 240 journal_has EVENT=detection LABEL=person
journalctl -u pidetect --no-pager -o json EVENT=detection > /out/detections.json
expect status-fps "STATUS shows fps" sh -c "systemctl show -p StatusText --value pidetect | grep -q 'fps inference'"
prop StatusText > /out/status_text

# 3. the watchdog: armed, and pinged while the worker makes progress
watchdog=$(prop WatchdogUSec)
expect watchdog-armed "WatchdogUSec=$watchdog" test -n "$watchdog" -a "$watchdog" != 0 -a "$watchdog" != infinity
first=$(prop WatchdogTimestampMonotonic)
sleep 20
second=$(prop WatchdogTimestampMonotonic)
expect watchdog-pinged "WatchdogTimestamp advanced ($first -> $second)" sh -c "[ '$second' -gt '$first' ] 2>/dev/null"
expect no-restarts "no restart while running" test "$(prop NRestarts)" = 0

# 4. a clean stop: SIGTERM, STOPPING=1, exit 0 within the unit's TimeoutStopSec
stop_start=$(date +%s)
systemctl stop pidetect.service
expect stop-clean "stopped with result success" test "$(prop Result)" = success
expect stop-status "exit status 0" test "$(prop ExecMainStatus)" = 0
expect stop-fast "stopped within 10 s" test $(( $(date +%s) - stop_start )) -le 10
expect journal-stopped "lifecycle stopped in the journal" journal_has EVENT=lifecycle STATE=stopped
journalctl -u pidetect --no-pager > /out/journal.txt
exit 0
