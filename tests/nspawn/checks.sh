#!/bin/bash
# Runs inside a throw-away container with a real systemd PID 1 (tests/test_service_nspawn.py boots it).
# Installs pidetect with the real deploy/install.sh and checks the service as a Pi user would meet it.
# One line per check in /out/results ("PASS name" / "FAIL name: why"); details in /out/log.
. /src/tests/nspawn/lib.sh

CONFIG=/etc/pidetect/pidetect.toml

# 1. the real installer, with a video file as the camera; no --display: the container has no screen (no DRM
# connector), like a headless Pi, so the installer chooses the web UI on the network with a password
if /src/deploy/install.sh --source /media/clip.avi --record --models-from /src/models --no-start > /out/install.log 2>&1; then
    pass install
else
    fail install "deploy/install.sh exited $?"; cat /out/install.log >> /out/log; exit 1
fi
expect config-written "config has the chosen source" grep -q '^source = "/media/clip.avi"' "$CONFIG"
expect headless-web "no screen: display mjpeg on all interfaces" sh -c \
    "grep -q '^display = \"mjpeg\"' $CONFIG && grep -q '^mjpeg_address = \"0.0.0.0\"' $CONFIG"
expect config-each-key-once "every key once (set in place of its commented line)" sh -c \
    "[ \"\$(grep -cE '^#? ?source = ' $CONFIG)\" = 1 ] && ! grep -q '^# source = ' $CONFIG"
expect install-says-url "the installer printed the URL with the .local name and the password" sh -c \
    "grep -q \"web UI: http://\$(hostname).local:8080/\" /out/install.log && grep -q \"password: \$(head -n1 /etc/pidetect/web.password)\" /out/install.log"
expect path-root "pidetect on PATH for root" sh -c 'command -v pidetect && pidetect --version | grep -q "^pidetect "'
expect path-user "pidetect on PATH for a user" setpriv --reuid=nobody --regid=nogroup --clear-groups -- \
    env -i PATH=/usr/local/bin:/usr/bin:/bin sh -c 'pidetect --version | grep -q "^pidetect "'
expect no-hdmi-dropin "no getty conflict without fb" test ! -e /etc/systemd/system/pidetect.service.d/hdmi-console.conf
printf '\n# user edit: keep looping the clip\nloop = true\nrealtime = true\nmetrics_interval = 2\n' >> "$CONFIG"
# short pre/post rolls: the clip's objects are 0.8 s apart, so each makes a clip of its own that ends
printf 'pre_capture = 0.2\npost_capture = 0.2\n' >> "$CONFIG"
# the test's broker on the shared loopback: events leave the hardened unit over MQTT
if [ -e /media/mqtt_port ]; then
    printf 'mqtt_host = "127.0.0.1"\nmqtt_port = %s\nmqtt_topic_prefix = "pd/nspawn"\n' "$(cat /media/mqtt_port)" >> "$CONFIG"
fi

# 2. start: Type=notify returns once the daemon sent READY=1
start=$(date +%s%N)
systemctl start pidetect.service
end=$(date +%s%N)
expect started "active after start" test "$(prop ActiveState)" = active
echo "start to READY: $(( (end - start) / 1000000 )) ms" > /out/ready_time
expect status-fps "STATUS shows fps" wait_for 20 sh -c "systemctl show -p StatusText --value pidetect | grep -q 'fps inference'"
prop StatusText > /out/status_text
expect journal-cat "journalctl -u pidetect EVENT=detection LABEL=cat" wait_for 40 journal_has EVENT=detection LABEL=cat
expect journal-person "journalctl -u pidetect EVENT=detection LABEL=person" wait_for 40 journal_has EVENT=detection LABEL=person
journalctl -u pidetect --no-pager -o json EVENT=detection > /out/detections.json
expect journal-metrics "metrics records" wait_for 20 journal_has EVENT=metrics

# 3. identity and sandbox of the running process
PID=$(prop MainPID)
expect user "runs as pidetect" test "$(ps -o user= -p "$PID")" = pidetect
groups_line=$(grep '^Groups:' /proc/"$PID"/status)
for group in video render tty; do
    gid=$(getent group $group | cut -d: -f3)
    expect "group-$group" "supplementary group $group ($gid) in '$groups_line'" sh -c "echo '$groups_line' | grep -qw $gid"
done
expect no-new-privs "NoNewPrivs: 1" grep -q '^NoNewPrivs:[[:space:]]*1' /proc/"$PID"/status
expect cap-tty-only "only CAP_SYS_TTY_CONFIG" sh -c "grep '^CapEff' /proc/$PID/status | grep -q '0000000004000000'"
# a shell as the service user inside the service's own mount namespace sees what the daemon sees
as_service() { nsenter -t "$PID" -m setpriv --reuid=pidetect --regid=pidetect --init-groups -- sh -c "$1"; }
refuse() { ! "$@"; }
expect write-state "can write the state directory" as_service 'touch /var/lib/pidetect/probe'
expect no-write-opt "cannot write /opt/pidetect" refuse as_service 'touch /opt/pidetect/probe'
expect no-write-etc "cannot write /etc outside its own folder" refuse as_service 'touch /etc/probe'
expect config-folder-writable "can replace its config (the web UI saves zones)" as_service \
    'touch /etc/pidetect/.probe && rm /etc/pidetect/.probe'
expect no-write-usr "cannot write /usr/local" refuse as_service 'touch /usr/local/probe'
as_service 'touch /tmp/pidetect-probe'
expect private-tmp "the service's /tmp is its own" refuse test -e /tmp/pidetect-probe
expect no-home "home directories hidden" refuse as_service 'ls /root/.bashrc' 
expect snapshots "snapshots in the state directory" sh -c 'ls /var/lib/pidetect/snapshots/*.jpg >/dev/null'
# clips (installer --record: record = true, FFmpeg): the encoder runs inside the hardened unit, its pre-roll
# in the unit's RuntimeDirectory (RAM), finished H.264 clips in the state directory
expect record-config "the installer wrote record = true" grep -q '^record = true' "$CONFIG"
expect ring-in-ram "the pre-roll ring in /run/pidetect (tmpfs)" wait_for 20 sh -c \
    'ls -d /run/pidetect/pidetect-ring-* >/dev/null && [ "$(stat -f -c %T /run/pidetect)" = tmpfs ]'
clip_plays() { local clip; clip=$(ls /var/lib/pidetect/clips/*.mp4 2>/dev/null | head -1); [ -n "$clip" ] && \
    ffprobe -v error -show_entries stream=codec_name -of csv=p=0 "$clip" | grep -qx h264; }
expect clips "an H.264 clip in /var/lib/pidetect/clips" wait_for 60 clip_plays
expect journal-clip "journalctl -u pidetect EVENT=clip" wait_for 20 journal_has EVENT=clip
# the display thread lowered its own priority (display_nice = 10): the syscall filter lets setpriority through
thread_nices() { local task; for task in /proc/"$PID"/task/*; do sed 's/.*) //' "$task"/stat | cut -d' ' -f17; done; }
thread_nices | sort -n | uniq -c > /out/thread_nice
has_nice_10() { thread_nices | grep -qx 10; }
expect display-nice "a thread at nice 10 (count, value: $(tr -s ' \n' ' ' < /out/thread_nice))" has_nice_10
# the installer made a web password (--display mjpeg): readable by the service's group only, and asked for
web_password_ok() { [ "$(stat -c '%U:%G %a' /etc/pidetect/web.password)" = "root:pidetect 640" ] && \
    grep -q '^web_password_file = "/etc/pidetect/web.password"' "$CONFIG" && [ -s /etc/pidetect/web.password ]; }
expect web-password "a web password made by the installer (root:pidetect 0640)" web_password_ok
cat > /out/web_get.py <<'PY'
import base64, sys, urllib.error, urllib.request
password = open("/etc/pidetect/web.password").read().strip() if sys.argv[1] == "with" else "wrong"
request = urllib.request.Request("http://127.0.0.1:8080/", headers={
    "Authorization": "Basic " + base64.b64encode(f"pidetect:{password}".encode()).decode()})
try:
    body = urllib.request.urlopen(request, timeout=5).read()
    sys.exit(0 if sys.argv[1] == "with" and b"stream.mjpg" in body else 1)
except urllib.error.HTTPError as error:
    sys.exit(0 if sys.argv[1] == "without" and error.code == 401 else 1)
PY
expect mjpeg-view "web UI on 127.0.0.1:8080 with the password, 401 without" wait_for 10 sh -c \
    "python3 /out/web_get.py with && python3 /out/web_get.py without"
# a zone saved from the web UI, inside the hardened unit: the file rewritten with its comments, a .bak, a reload
cp "$CONFIG" /root/config.before-web-save
cat > /out/zone_save.py <<'PY'
import base64, json, time, urllib.request
password = open("/etc/pidetect/web.password").read().split("\n")[0]
auth = "Basic " + base64.b64encode(f"pidetect:{password}".encode()).decode()
body = json.dumps({"kind": "zone", "name": "doorstep", "objects": ["person"],
                   "points": [[10, 200], [300, 200], [300, 470], [10, 470]]}).encode()
request = urllib.request.Request("http://127.0.0.1:8080/api/zones/save", data=body, method="POST", headers={
    "Authorization": auth, "Content-Type": "application/json", "Origin": "http://127.0.0.1:8080"})
answer = json.loads(urllib.request.urlopen(request, timeout=30).read())
assert answer["ok"], answer
for _ in range(120):
    time.sleep(0.5)
    try:
        verdict = json.loads(urllib.request.urlopen(urllib.request.Request("http://127.0.0.1:8080/api/reload",
                             headers={"Authorization": auth}), timeout=5).read())
    except OSError:
        continue
    if verdict.get("reload", 0) >= answer["reload"]:
        assert verdict["ok"], verdict
        break
else:
    raise SystemExit("no verdict")
PY
zone_saved() { python3 /out/zone_save.py && grep -q '^\[zones.doorstep\]' "$CONFIG" && test -s "$CONFIG.bak" && \
    grep -q '^# user edit' "$CONFIG"; }
expect web-zone-save "a zone saved from the web UI: config rewritten (comments kept), .bak, reloaded" zone_saved
expect web-zone-save-said "the daemon reloaded" wait_for 10 journal_has EVENT=lifecycle STATE=reloaded
# it listens on every interface (tested on loopback only: the container shares the host's network)
expect web-all-interfaces "listening on 0.0.0.0:8080" sh -c "ss -ltnH 'sport = :8080' | grep -q '0.0.0.0:8080'"
# 3b. systemctl reload: a zone the daemon would refuse fails the reload and leaves the service as it was
cp "$CONFIG" /root/config.before-zone
printf '\n[zones.crossed]\npoints = [[0.1, 0.1], [0.5, 0.5], [0.5, 0.1], [0.1, 0.5]]\n' >> "$CONFIG"
expect reload-refused "systemctl reload fails for a self-crossing zone" refuse systemctl reload pidetect.service
expect reload-refused-running "still active on the running configuration" test "$(prop ActiveState)" = active
expect reload-refused-said "the reason in the journal of the reload" sh -c \
    "journalctl -u pidetect --no-pager -o cat | grep -q 'reload refused.*self-crossing'"
cp /root/config.before-zone "$CONFIG"
printf '\n[zones.lawn]\npoints = [[0.1, 0.5], [0.9, 0.5], [0.9, 1.0], [0.1, 1.0]]\n' >> "$CONFIG"
expect reload-ok "systemctl reload of a good zone succeeds" systemctl reload pidetect.service
expect reload-ok-said "the daemon reloaded" wait_for 10 journal_has EVENT=lifecycle STATE=reloaded
# the later steps append top-level keys to the file: back to the file before the zones (tables go last)
cp /root/config.before-web-save "$CONFIG"

# 4. a hung inference worker: the watchdog kills it and systemd restarts it
mkdir -p /etc/systemd/system/pidetect.service.d
cat > /etc/systemd/system/pidetect.service.d/zz-test-hang.conf <<'UNIT'
[Service]
Environment=PIDETECT_TEST_STALL_AFTER_FRAMES=30
WatchdogSec=4
UNIT
systemctl daemon-reload
systemctl restart pidetect.service
expect watchdog-restart "NRestarts >= 1 after the worker hung" wait_for 60 sh -c '[ "$(systemctl show -p NRestarts --value pidetect)" -ge 1 ]'
expect watchdog-logged "systemd logged the watchdog timeout" sh -c "journalctl -u pidetect --no-pager | grep -q 'Watchdog timeout'"
expect stall-logged "pidetect said pings were withheld" sh -c "journalctl -u pidetect --no-pager -o cat | grep -q 'watchdog pings withheld'"
rm /etc/systemd/system/pidetect.service.d/zz-test-hang.conf
systemctl daemon-reload
systemctl stop pidetect.service
systemctl reset-failed pidetect.service 2>/dev/null || true

# 5. a broken config stops it with exit 78 and no restart loop
cp "$CONFIG" /root/config.backup
echo 'threshhold = 0.7' >> "$CONFIG"
systemctl start pidetect.service || true
sleep 8   # RestartSec=5: a restart would have happened by now
expect config-78 "ExecMainStatus=78" test "$(prop ExecMainStatus)" = 78
expect config-failed "failed, not activating" test "$(prop ActiveState)" = failed
expect config-no-loop "NRestarts=0" test "$(prop NRestarts)" = 0
expect config-message "the error names the key" sh -c "journalctl -u pidetect --no-pager -o cat | grep -q \"unknown key 'threshhold'\""
cp /root/config.backup "$CONFIG"
systemctl reset-failed pidetect.service

# 6. a clean stop
systemctl start pidetect.service
sleep 2
stop_start=$(date +%s)
systemctl stop pidetect.service
expect stop-fast "stopped within 5 s" test $(( $(date +%s) - stop_start )) -le 5
expect stop-clean "Result=success, exit 0" sh -c "[ \"\$(systemctl show -p Result --value pidetect)\" = success ] && [ \"\$(systemctl show -p ExecMainStatus --value pidetect)\" = 0 ]"
expect stop-logged "lifecycle stopped in the journal" journal_has EVENT=lifecycle STATE=stopped

# 6b. a Coral: installer --coral, and the service with accelerator = auto on the stand-in libedgetpu.so.1 the test
# built (tests/edgetpu_standin.c: a real LiteRT delegate that claims the Edge TPU op; no Coral here)
if [ -e /media/libedgetpu.so.1 ]; then
    /src/deploy/install.sh --no-start --coral > /out/coral-missing.log 2>&1
    expect coral-says-missing "--coral without libedgetpu says it is missing" grep -q 'libedgetpu.so.1 is not installed' /out/coral-missing.log
    # the stand-in as a runtime package, the way a libedgetpu1-std .deb built for this LiteRT is installed
    arch=$(dpkg --print-architecture); multiarch=$(gcc -print-multiarch 2>/dev/null || echo x86_64-linux-gnu)
    mkdir -p /root/deb/DEBIAN "/root/deb/usr/lib/$multiarch"
    install -m 0644 /media/libedgetpu.so.1 "/root/deb/usr/lib/$multiarch/libedgetpu.so.1.0"
    ln -s libedgetpu.so.1.0 "/root/deb/usr/lib/$multiarch/libedgetpu.so.1"
    printf 'Package: libedgetpu1-std\nVersion: 16.0-standin\nArchitecture: %s\nMaintainer: pidetect tests <tests@localhost>\nDescription: stand-in Edge TPU delegate (tests/edgetpu_standin.c)\n' "$arch" > /root/deb/DEBIAN/control
    dpkg-deb --build /root/deb /root/libedgetpu1-std_16.0-standin.deb
    /src/deploy/install.sh --no-start --coral-runtime /src/README.md > /out/coral-bad.log 2>&1
    coral_bad_rc=$?
    expect coral-runtime-refused "a file that is no .deb: exit 2, said" sh -c "[ $coral_bad_rc = 2 ] && grep -q 'not a .deb package' /out/coral-bad.log"
    /src/deploy/install.sh --no-start --coral-runtime /root/libedgetpu1-std_16.0-standin.deb > /out/coral.log 2>&1
    expect coral-runtime "--coral-runtime installed the package" sh -c "dpkg -s libedgetpu1-std | grep -q '^Status: install ok installed'"
    expect coral-found "--coral finds the library" grep -Eq 'Coral: (/usr)?/lib/.*/libedgetpu.so.1 found' /out/coral.log
    expect coral-udev "udev rule for the USB Coral" grep -q 'ATTRS{idVendor}=="1a6e"' /etc/udev/rules.d/60-pidetect-coral.rules
    expect coral-group "pidetect is in plugdev" sh -c 'id -nG pidetect | grep -qw plugdev'
    expect coral-dropin "the unit may open the USB device" sh -c "systemctl cat pidetect | grep -q '^DeviceAllow=char-usb_device rw' && systemctl show -p SupplementaryGroups --value pidetect | grep -qw plugdev"
    expect coral-auto-config "accelerator = auto is the configured one" sh -c "! grep -q '^accelerator' $CONFIG"
    since=$(date '+%Y-%m-%d %H:%M:%S')
    systemctl start pidetect.service
    loaded_on() { journalctl -u pidetect --since "$since" --no-pager -o json EVENT=lifecycle STATE=model_loaded | grep -q "\"ACCELERATOR\":\"$1\""; }
    expect coral-edgetpu "auto picked the Edge TPU in the hardened unit (journal ACCELERATOR=edgetpu)" wait_for 40 loaded_on 'edgetpu (first device)'
    expect coral-edgetpu-model "and the Edge TPU build of the default model" sh -c "journalctl -u pidetect --since '$since' --no-pager -o cat EVENT=lifecycle STATE=model_loaded | grep -q _edgetpu.tflite"
    expect coral-running "it runs (STATUS fps)" wait_for 20 sh -c "systemctl show -p StatusText --value pidetect | grep -q 'fps inference'"
    systemctl stop pidetect.service
    dpkg -r libedgetpu1-std >/dev/null && ldconfig
    since=$(date '+%Y-%m-%d %H:%M:%S')
    systemctl start pidetect.service
    expect coral-fallback "without the library auto runs on the CPU" wait_for 40 loaded_on cpu
    expect coral-fallback-once "said once in the log" sh -c "[ \"\$(journalctl -u pidetect --since '$since' --no-pager -o cat | grep -c 'accelerator auto: the Edge TPU runtime')\" = 1 ]"
    systemctl stop pidetect.service
fi

# 7. re-running the installer upgrades in place and keeps the edited config; display fb takes tty1
sed -i 's/^display = "mjpeg"$/display = "fb"/' "$CONFIG"
/src/deploy/install.sh --no-start > /out/reinstall.log 2>&1
expect hdmi-dropin "display fb: Conflicts=getty@tty1 drop-in" sh -c "systemctl show -p Conflicts --value pidetect | grep -q getty@tty1.service"
expect reinstall-keeps-config "user edit still there" grep -q '^# user edit' "$CONFIG"
expect reinstall-says-kept "installer says it kept the config" grep -q "kept your $CONFIG" /out/reinstall.log
expect reinstall-runs "service starts after the upgrade (no HDMI here: it waits for fb0)" systemctl start pidetect.service
expect fb-absent-logged "fb0 missing is logged, not fatal" wait_for 10 sh -c "journalctl -u pidetect --no-pager -o cat | grep -q 'cannot open /dev/fb0'"
expect fb-absent-running "still running without fb0" test "$(prop ActiveState)" = active
systemctl stop pidetect.service

# 7b. your own model: --model checks it, copies it, and the service runs it (when ../shared is bound in)
if [ -e /yolo/yolov8n_full_integer_quant.tflite ]; then
    /src/deploy/install.sh --no-start --model /yolo/yolov8n_full_integer_quant.tflite > /out/model.log 2>&1
    expect model-installed "--model copies the checked file" sh -c "test -f /opt/pidetect/models/yolov8n_full_integer_quant.tflite && grep -q 'model checked: yolov8' /out/model.log"
    /src/deploy/install.sh --no-start --model /src/README.md > /out/bad-model.log 2>&1
    bad_rc=$?
    expect model-refused "a file that is no model: exit 78, nothing installed" sh -c "[ $bad_rc = 78 ] && test ! -e /opt/pidetect/models/README.md && grep -q 'not a TFLite model' /out/bad-model.log"
    sed -i 's/^display = "fb"$/display = "none"/' "$CONFIG"
    printf 'model = "/opt/pidetect/models/yolov8n_full_integer_quant.tflite"\nthreshold = 0.4\n' >> "$CONFIG"
    since=$(date '+%Y-%m-%d %H:%M:%S')
    systemctl start pidetect.service
    expect model-runs "the YOLO model runs in the hardened unit" wait_for 40 sh -c "journalctl -u pidetect --since '$since' --no-pager -o cat EVENT=lifecycle STATE=model_loaded | grep -q yolov8n && journalctl -u pidetect --since '$since' --no-pager -o cat EVENT=detection LABEL=cat | grep -q ."
    systemctl stop pidetect.service
fi

# 7c. two cameras on one machine: pidetect@door and pidetect@garden from the template, two clips as cameras
/src/deploy/install.sh --no-start --instance door --source /media/clip.avi > /out/door.log 2>&1
/src/deploy/install.sh --no-start --instance garden --source /media/clip2.avi > /out/garden.log 2>&1
expect instance-configs "door.toml and garden.toml, each with its name and its own web port" sh -c \
    'grep -q "^camera_name = \"door\"" /etc/pidetect/door.toml && grep -q "^mjpeg_port = 8081" /etc/pidetect/door.toml && grep -q "^camera_name = \"garden\"" /etc/pidetect/garden.toml && grep -q "^mjpeg_port = 8082" /etc/pidetect/garden.toml'
expect instance-plain-untouched "pidetect.service keeps its own config" grep -q '^source = "/media/clip.avi"' "$CONFIG"
for camera in door garden; do
    printf 'loop = true\nrealtime = true\nmetrics_interval = 2\n' >> /etc/pidetect/$camera.toml
    if [ -e /media/mqtt_port ]; then
        printf 'mqtt_host = "127.0.0.1"\nmqtt_port = %s\n' "$(cat /media/mqtt_port)" >> /etc/pidetect/$camera.toml
    fi
done
hostname > /out/hostname
systemctl start pidetect@door.service pidetect@garden.service
iprop() { systemctl show -p "$2" --value "pidetect@$1.service"; }
expect instances-active "both cameras active" sh -c '[ "$(systemctl is-active pidetect@door pidetect@garden | sort -u)" = active ]'
camera_saw() { journalctl --no-pager -o cat CAMERA="$1" EVENT=detection LABEL="$2" | grep -q .; }
expect journal-door "journalctl CAMERA=door has door's cat" wait_for 60 camera_saw door cat
expect journal-garden "journalctl CAMERA=garden has garden's horse" wait_for 60 camera_saw garden horse
expect journals-apart "neither camera's journal has the other's objects" sh -c '\
    ! journalctl --no-pager -o cat CAMERA=door EVENT=detection LABEL=horse | grep -q . && \
    ! journalctl --no-pager -o cat CAMERA=garden EVENT=detection LABEL=cat | grep -q .'
expect journal-unit-camera "every record of pidetect@door carries CAMERA=door" sh -c \
    '[ "$(journalctl -u pidetect@door --no-pager -o json EVENT=detection | grep -vc "\"CAMERA\":\"door\"")" = 0 ]'
DOOR=$(iprop door MainPID); GARDEN=$(iprop garden MainPID)
expect instance-state "each camera's events and snapshots in its own folder" wait_for 30 sh -c \
    'test -s /var/lib/pidetect/door/events.db && test -s /var/lib/pidetect/garden/events.db && ls /var/lib/pidetect/door/snapshots/*.jpg >/dev/null && ls /var/lib/pidetect/garden/snapshots/*.jpg >/dev/null'
cat > /out/written.py <<'PY'
import os, sys
def written(pid):
    files = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
            flags = int(open(f"/proc/{pid}/fdinfo/{fd}").read().split("flags:")[1].split()[0], 8)
        except (OSError, IndexError, ValueError):
            continue
        if target.startswith("/") and not target.startswith(("/dev/", "/proc/")) and flags & (os.O_WRONLY | os.O_RDWR):
            files.add(target)
    return files
door, garden = written(sys.argv[1]), written(sys.argv[2])
print("door writes", sorted(door)); print("garden writes", sorted(garden))
sys.exit(0 if door and garden and not door & garden else 1)
PY
expect no-shared-file "no file open for writing by both cameras" python3 /out/written.py "$DOOR" "$GARDEN"
python3 /out/written.py "$DOOR" "$GARDEN" > /out/written.txt 2>&1
own_runtime() { [ "$(iprop door RuntimeDirectory)" = pidetect-door ] && [ "$(iprop garden RuntimeDirectory)" = pidetect-garden ] \
    && [ -d /run/pidetect-door ] && [ -d /run/pidetect-garden ]; }
expect instance-runtime "each camera's pre-roll folder in its own /run/pidetect-NAME" own_runtime
cat > /out/web_port.py <<'PY'
import sys, urllib.error, urllib.request
try:
    urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/", timeout=5)
except urllib.error.HTTPError as error:
    sys.exit(0 if error.code == 401 else 1)  # there, and asking for the password
except OSError:
    sys.exit(1)
sys.exit(1)
PY
expect instance-web "door's web UI on 8081, garden's on 8082" wait_for 20 sh -c 'python3 /out/web_port.py 8081 && python3 /out/web_port.py 8082'
# one camera stopped, the other goes on
systemctl stop pidetect@door.service
since=$(date '+%Y-%m-%d %H:%M:%S')
expect stop-one "door stopped, garden still active" sh -c '[ "$(systemctl is-active pidetect@door)" = inactive ] && [ "$(systemctl is-active pidetect@garden)" = active ]'
expect garden-goes-on "garden keeps detecting after door stopped" wait_for 30 sh -c \
    "journalctl --since '$since' --no-pager -o cat CAMERA=garden EVENT=metrics | grep -q ."
# only one camera may own the HDMI screen: the second is refused at start (78), with the reason
systemctl stop pidetect@garden.service
for camera in door garden; do printf 'display = "fb"\nfb_tty = ""\n' >> /etc/pidetect/$camera.toml; done
sed -i '0,/^display = "mjpeg"$/s//# display = "mjpeg"/' /etc/pidetect/door.toml /etc/pidetect/garden.toml
systemctl start pidetect@door.service
systemctl start pidetect@garden.service || true
sleep 7   # RestartSec=5: a restart would have happened by now
second_refused() { [ "$(iprop garden ExecMainStatus)" = 78 ] && [ "$(iprop garden NRestarts)" = 0 ] \
    && [ "$(systemctl is-active pidetect@door)" = active ]; }
expect fb-second-refused "the second camera on the screen: exit 78, no restart loop" second_refused
expect fb-second-says-why "and says why" sh -c "journalctl -u pidetect@garden --no-pager -o cat | grep -q 'another pidetect already draws on /dev/fb0'"
systemctl stop pidetect@door.service
systemctl reset-failed pidetect@garden.service 2>/dev/null || true
# one camera removed: its unit goes, its config and events stay; the other camera is untouched
/src/deploy/install.sh --uninstall --instance door > /out/uninstall-door.log 2>&1
expect uninstall-instance "pidetect@door disabled, door.toml kept, garden still enabled" sh -c \
    '[ "$(systemctl is-enabled pidetect@door 2>/dev/null)" != enabled ] && test -e /etc/pidetect/door.toml && [ "$(systemctl is-enabled pidetect@garden)" = enabled ]'

# 8. uninstall removes the unit and the venv, keeps config and state
/src/deploy/install.sh --uninstall > /out/uninstall.log 2>&1
expect uninstall-unit "unit removed" test ! -e /etc/systemd/system/pidetect.service
expect uninstall-venv "venv removed" test ! -e /opt/pidetect
expect uninstall-keeps-config "config kept" test -e "$CONFIG"
expect uninstall-keeps-state "snapshots kept" test -d /var/lib/pidetect/snapshots
expect uninstall-unknown "systemd no longer knows the unit" sh -c "! systemctl cat pidetect.service >/dev/null 2>&1"
expect uninstall-instances "nor the template, nor camera garden" sh -c "test ! -e /etc/systemd/system/pidetect@.service && [ \"\$(systemctl is-enabled pidetect@garden 2>/dev/null)\" != enabled ] && ! systemctl is-active -q pidetect@garden"

! grep -q '^FAIL' "$RESULTS"
