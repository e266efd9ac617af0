#!/usr/bin/env bash
# Install (or upgrade, or remove) pidetect as a systemd service on Raspberry Pi OS Bookworm.
#
#   sudo ./deploy/install.sh [--source SPEC] [--display fb|mjpeg|none|fb,mjpeg] [--model FILE] [--mqtt HOST] [--record] [--coral] [--no-start]
#   sudo ./deploy/install.sh --instance NAME --source SPEC [...]   (one of several cameras: pidetect@NAME)
#   sudo ./deploy/install.sh --uninstall [--instance NAME] [--purge]
#
# Idempotent: re-running upgrades the package, the model and the unit in place. It never
# overwrites /etc/pidetect/pidetect.toml (or NAME.toml) once it exists; it tells you when the shipped example changed.
set -euo pipefail

REPO=$(cd "$(dirname "$(readlink -f "$0")")/.." && pwd)
PREFIX=/opt/pidetect
VENV=$PREFIX/venv
MODELS=$PREFIX/models
CONFIG_DIR=/etc/pidetect
CONFIG=$CONFIG_DIR/pidetect.toml
STATE=/var/lib/pidetect
UNIT_DIR=/etc/systemd/system
UNIT=$UNIT_DIR/pidetect.service
DROPIN_DIR=$UNIT_DIR/pidetect.service.d
TEMPLATE=$UNIT_DIR/pidetect@.service
UDEV_RULE=/etc/udev/rules.d/60-pidetect-coral.rules
USER_NAME=pidetect
PYTHON=${PIDETECT_PYTHON:-/usr/bin/python3}

SOURCE=""
DISPLAY_OUT=""
START=1
UNINSTALL=0
PURGE=0
MODELS_FROM=""
MODEL_FILE=""
MQTT_HOST=""
RECORD=0
MODEL_PATH=""
FORCE=0
INSTANCE=""
CORAL=0
CORAL_RUNTIME=""
WEB_ADDRESS=0.0.0.0

say()  { printf 'pidetect-install: %s\n' "$*"; }
die()  { printf 'pidetect-install: error: %s\n' "$1" >&2; exit "${2:-1}"; }

screen_connected() {
    local status
    for status in "${PIDETECT_SYSFS:-/sys}"/class/drm/card*-*/status; do
        [ -r "$status" ] && [ "$(cat "$status")" = connected ] && return 0
    done
    return 1
}

usage() {
    sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//'
    cat <<'TXT'
Options:
  --source SPEC        camera for a new config: auto (default), /dev/video0, picamera2,
                       'pipe:rpicam-vid -t 0 -n --codec yuv420 --width 640 --height 480 -o -', rtsp://…, a file
  --display LIST       fb (HDMI screen), mjpeg (the web UI on port 8080), none, or fb,mjpeg (default: fb
                       when a screen is connected, else mjpeg: a Pi without a monitor is watched from a laptop)
  --web-address ADDR   where the web UI listens: 0.0.0.0 (default: the whole network, with a password made
                       here) or 127.0.0.1 (this Pi only)
  --mqtt HOST          publish events to this MQTT broker (Home Assistant discovery on) in a new config
  --record             keep an H.264 clip of every event (record = true in a new config; installs ffmpeg)
  --instance NAME      one of several cameras: pidetect@NAME.service with /etc/pidetect/NAME.toml, its own
                       folders in /var/lib/pidetect/NAME and a free web port (display mjpeg unless --display)
  --coral              a Coral Edge TPU: the udev rule and groups its USB/PCIe device needs, and a unit
                       drop-in that lets the service open it; libedgetpu.so.1 itself must be installed
                       (docs/accelerators-and-cameras.md: which build works with ai-edge-litert)
  --coral-runtime DEB  --coral, and install this libedgetpu package first (a libedgetpu1-std/-max .deb
                       built for this LiteRT; Debian has none)
  --no-start           install and enable, but do not start now
  --models-from DIR    take the model files from DIR (verified against the manifest) instead of downloading
  --model FILE         your own .tflite (an Ultralytics YOLO export, or an SSD): checked, copied to
                       /opt/pidetect/models and named in a new config (the default model is installed too)
  --uninstall          stop and remove the service and /opt/pidetect; keep config and snapshots
  --purge              with --uninstall: also remove /etc/pidetect, /var/lib/pidetect and the pidetect user
  --force              install on an OS or architecture that is not supported
TXT
}

while [ $# -gt 0 ]; do
    case "$1" in
        --source) [ $# -ge 2 ] || die "--source needs a value" 2; SOURCE=$2; shift 2 ;;
        --display) [ $# -ge 2 ] || die "--display needs a value" 2; DISPLAY_OUT=$2; shift 2 ;;
        --web-address) [ $# -ge 2 ] || die "--web-address needs an address (0.0.0.0 or 127.0.0.1)" 2; WEB_ADDRESS=$2; shift 2 ;;
        --no-start) START=0; shift ;;
        --models-from) [ $# -ge 2 ] || die "--models-from needs a folder" 2; MODELS_FROM=$2; shift 2 ;;
        --model) [ $# -ge 2 ] || die "--model needs a .tflite file" 2; MODEL_FILE=$2; shift 2 ;;
        --mqtt) [ $# -ge 2 ] || die "--mqtt needs a broker host name or address" 2; MQTT_HOST=$2; shift 2 ;;
        --record) RECORD=1; shift ;;
        --instance) [ $# -ge 2 ] || die "--instance needs a camera name" 2; INSTANCE=$2; shift 2 ;;
        --coral) CORAL=1; shift ;;
        --coral-runtime) [ $# -ge 2 ] || die "--coral-runtime needs a libedgetpu .deb file" 2; CORAL_RUNTIME=$2; CORAL=1; shift 2 ;;
        --uninstall) UNINSTALL=1; shift ;;
        --purge) PURGE=1; shift ;;
        --force) FORCE=1; shift ;;
        -h|--help) usage; exit 0 ;;
        *) usage >&2; die "unknown option '$1'" 2 ;;
    esac
done
[ "$(id -u)" = 0 ] || die "run as root: sudo $0 $*" 2
[ $PURGE = 0 ] || [ $UNINSTALL = 1 ] || die "--purge only goes with --uninstall" 2
[ -z "$MODEL_FILE" ] || [ -f "$MODEL_FILE" ] || die "--model $MODEL_FILE: no such file" 2
if [ -n "$CORAL_RUNTIME" ]; then
    [ -f "$CORAL_RUNTIME" ] || die "--coral-runtime $CORAL_RUNTIME: no such file" 2
    runtime_package=$(dpkg-deb -f "$CORAL_RUNTIME" Package 2>/dev/null) \
        || die "--coral-runtime $CORAL_RUNTIME: not a .deb package (dpkg-deb cannot read it)" 2
    case "$runtime_package" in
        libedgetpu1-std|libedgetpu1-max|libedgetpu1-*) ;;
        *) die "--coral-runtime $CORAL_RUNTIME: package '$runtime_package' is not a libedgetpu1-* runtime" 2 ;;
    esac
fi
[ -z "$MQTT_HOST" ] || [[ "$MQTT_HOST" =~ ^[A-Za-z0-9._:-]+$ ]] || die "--mqtt must be a host name or address (got '$MQTT_HOST')" 2
if [ -n "$INSTANCE" ]; then
    [[ "$INSTANCE" =~ ^[A-Za-z0-9_-]{1,64}$ ]] \
        || die "--instance must be 1 to 64 letters, digits, '-' or '_' (got '$INSTANCE')" 2
    [ "$INSTANCE" != pidetect ] || die "--instance pidetect would share /etc/pidetect/pidetect.toml with pidetect.service; choose another name" 2
    CONFIG=$CONFIG_DIR/$INSTANCE.toml
    UNIT_NAME=pidetect@$INSTANCE.service
    DROPIN_DIR=$UNIT_DIR/pidetect@$INSTANCE.service.d
    STATE_OF_UNIT=$STATE/$INSTANCE
    DEFAULT_DISPLAY=mjpeg  # one HDMI screen, several cameras: the web view unless asked
else
    UNIT_NAME=pidetect.service
    STATE_OF_UNIT=$STATE
    # a screen on the HDMI port (the kernel's DRM connector status): the overlay there; none (a headless Pi):
    # the web UI on the network, so the laptop's browser shows it
    if screen_connected; then DEFAULT_DISPLAY=fb; else DEFAULT_DISPLAY=mjpeg; fi
fi
case "${DISPLAY_OUT:-$DEFAULT_DISPLAY}" in
    none|fb|mjpeg|fb,mjpeg|mjpeg,fb) ;;
    *) die "--display must be fb, mjpeg, none or fb,mjpeg (got '$DISPLAY_OUT')" 2 ;;
esac
case "$WEB_ADDRESS" in
    0.0.0.0|127.0.0.1|::|::1) ;;
    *) die "--web-address must be 0.0.0.0 (the network) or 127.0.0.1 (this Pi only) (got '$WEB_ADDRESS')" 2 ;;
esac

have_systemd() { [ -d /run/systemd/system ]; }

uninstall_instance() {
    if have_systemd; then
        systemctl disable --now "$UNIT_NAME" 2>/dev/null || true
    fi
    rm -rf "$DROPIN_DIR"
    have_systemd && systemctl daemon-reload
    say "removed camera $INSTANCE ($UNIT_NAME); the other cameras and pidetect itself stay"
    if [ $PURGE = 1 ]; then
        rm -rf "$CONFIG" "$STATE_OF_UNIT"
        say "purged $CONFIG and $STATE_OF_UNIT"
    else
        say "kept $CONFIG and $STATE_OF_UNIT (remove them with --uninstall --instance $INSTANCE --purge)"
    fi
}

uninstall() {
    if have_systemd; then
        systemctl disable --now pidetect.service 2>/dev/null || true
        # every camera of the template too: pidetect itself is going
        for unit in $(systemctl list-units --all --plain --no-legend 'pidetect@*.service' 2>/dev/null | awk '{print $1}') \
                    $(cd "$UNIT_DIR" 2>/dev/null && ls -d multi-user.target.wants/pidetect@*.service 2>/dev/null | xargs -r -n1 basename); do
            systemctl disable --now "$unit" 2>/dev/null || true
        done
    fi
    rm -f "$UNIT" "$TEMPLATE" "$UDEV_RULE"
    [ "$(readlink /usr/local/bin/pidetect 2>/dev/null)" = "$VENV/bin/pidetect" ] && rm -f /usr/local/bin/pidetect
    rm -rf "$DROPIN_DIR" "$UNIT_DIR"/pidetect@*.service.d "$PREFIX"
    have_systemd && systemctl daemon-reload
    say "removed the service (and every pidetect@ camera) and $PREFIX"
    if [ $PURGE = 1 ]; then
        rm -rf "$CONFIG_DIR" "$STATE"
        if id "$USER_NAME" >/dev/null 2>&1; then userdel "$USER_NAME" 2>/dev/null || true; fi
        say "purged $CONFIG_DIR, $STATE and the $USER_NAME user"
    else
        say "kept $CONFIG_DIR and $STATE (remove them with --uninstall --purge)"
    fi
}

if [ $UNINSTALL = 1 ]; then
    if [ -n "$INSTANCE" ]; then uninstall_instance; else uninstall; fi
    exit 0
fi

# --- 1. Is this a supported system? -----------------------------------------------------------
. /etc/os-release
ARCH=$(uname -m)
problems=()
case "$ARCH" in
    aarch64|x86_64) ;;
    armv7l|armv6l) problems+=("32-bit $ARCH: ai-edge-litert has no wheels for it; install the 64-bit Raspberry Pi OS") ;;
    *) problems+=("architecture $ARCH is not supported (aarch64, x86_64)") ;;
esac
case "${ID:-}:${VERSION_CODENAME:-}" in
    debian:bookworm|raspbian:bookworm|debian:trixie) ;;
    *) problems+=("${PRETTY_NAME:-this OS} is untested; pidetect targets Raspberry Pi OS Bookworm (Debian 12)") ;;
esac
have_systemd || problems+=("systemd is not running as PID 1, so the service cannot be started here")
if [ ${#problems[@]} -gt 0 ]; then
    for p in "${problems[@]}"; do say "unsupported: $p"; done
    [ $FORCE = 1 ] || die "stopping; re-run with --force to install anyway" 69
fi
"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 9))' 2>/dev/null \
    || die "$PYTHON is missing or older than 3.9" 69

# --- 2. System packages ------------------------------------------------------------------------
# python3-venv builds the venv; python3-systemd gives journal fields + sd_notify without compiling.
APT_PACKAGES=(python3-venv python3-systemd)
# ffmpeg encodes the clips (record = true): asked for with --record, or already set in the config
if [ "$RECORD" = 1 ] || grep -Eq '^[[:space:]]*record[[:space:]]*=[[:space:]]*true' "$CONFIG" 2>/dev/null; then
    APT_PACKAGES+=(ffmpeg)
fi
if [ -n "$CORAL_RUNTIME" ]; then
    say "installing the Edge TPU runtime $runtime_package from $CORAL_RUNTIME"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$(readlink -f "$CORAL_RUNTIME")" >/dev/null \
        || die "--coral-runtime $CORAL_RUNTIME: apt-get could not install it (see above)" 69
    ldconfig  # a package without the ldconfig trigger would leave the loader's cache without it
fi
missing=()
for pkg in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
    say "installing apt packages: ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# --- 3. User and groups ------------------------------------------------------------------------
for group in video render tty; do
    getent group "$group" >/dev/null || groupadd --system "$group"
done
if ! id "$USER_NAME" >/dev/null 2>&1; then
    useradd --system --user-group --home-dir "$STATE" --no-create-home --shell /usr/sbin/nologin \
        --comment "pidetect daemon" "$USER_NAME"
    say "created system user $USER_NAME"
fi
usermod -a -G video,render,tty "$USER_NAME"
CORAL_GROUPS=""
if [ $CORAL = 1 ]; then
    # A USB Coral is a libusb device (/dev/bus/usb/…, 1a6e:089a before its firmware is loaded, 18d1:9302 after);
    # a PCIe/M.2 Coral is /dev/apex_N (the gasket/apex driver). Group plugdev may open the first, apex the second.
    getent group plugdev >/dev/null || groupadd --system plugdev
    usermod -a -G plugdev "$USER_NAME"
    CORAL_GROUPS=plugdev
    if grep -qw apex /proc/devices 2>/dev/null; then
        getent group apex >/dev/null || groupadd --system apex
        usermod -a -G apex "$USER_NAME"
        CORAL_GROUPS="plugdev apex"
    fi
    mkdir -p "$(dirname "$UDEV_RULE")"
    cat > "$UDEV_RULE" <<'RULES'
# Written by deploy/install.sh --coral: the Coral Edge TPU may be opened by group plugdev (USB) or apex (PCIe).
SUBSYSTEM=="usb", ATTRS{idVendor}=="1a6e", ATTRS{idProduct}=="089a", MODE="0660", GROUP="plugdev"
SUBSYSTEM=="usb", ATTRS{idVendor}=="18d1", ATTRS{idProduct}=="9302", MODE="0660", GROUP="plugdev"
SUBSYSTEM=="apex", MODE="0660", GROUP="apex"
RULES
    if command -v udevadm >/dev/null; then
        { udevadm control --reload-rules && udevadm trigger --subsystem-match=usb; } 2>/dev/null || true
    fi
    if ldconfig -p 2>/dev/null | grep -q 'libedgetpu\.so\.1 '; then
        say "Coral: $(ldconfig -p | grep -m1 'libedgetpu\.so\.1 ' | sed 's/.*=> //') found; udev rule $UDEV_RULE, group(s) $CORAL_GROUPS"
    else
        say "Coral: udev rule and group(s) $CORAL_GROUPS set up, but libedgetpu.so.1 is not installed: install a libedgetpu"
        say "       built for this LiteRT (docs/accelerators-and-cameras.md); until then accelerator = auto runs on the CPU"
    fi
fi

# --- 4. Virtual environment and package (upgrade in place) -------------------------------------
mkdir -p "$PREFIX"
if [ ! -x "$VENV/bin/python" ]; then
    # system site packages: apt's python3-systemd (and picamera2 where installed) stay importable
    "$PYTHON" -m venv --system-site-packages "$VENV"
    say "created $VENV"
fi
say "installing pidetect into $VENV (this downloads LiteRT, OpenCV and numpy the first time)"
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip
# build from a copy: the source tree may be read-only, and setuptools writes build files next to it
BUILD=$(mktemp -d)
trap 'rm -rf "$BUILD"' EXIT
tar -C "$REPO" --exclude=.git --exclude=.venv --exclude='models/*.tflite' --exclude=build -cf - . | tar -C "$BUILD" -xf -
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade "$BUILD"
cp "$REPO/README.md" "$PREFIX/README.md"
rm -rf "$PREFIX/docs" && cp -r "$REPO/docs" "$PREFIX/docs"
# `pidetect …` from any shell, as root and as any user (the README's commands)
ln -sfn "$VENV/bin/pidetect" /usr/local/bin/pidetect

# --- 5. Model (verified against the manifest; nothing unverified is ever put in place) -----------
fetch_args=(models fetch --dest "$MODELS")
[ -n "$MODELS_FROM" ] && fetch_args+=(--from "$MODELS_FROM")
"$VENV/bin/pidetect" "${fetch_args[@]}" || die "could not fetch the model (see above)" 69
if [ -n "$MODEL_FILE" ]; then
    # the user's model goes in only once pidetect has loaded it (family, labels, input all readable)
    name=$(basename "$MODEL_FILE")
    install -m 0644 "$MODEL_FILE" "$MODELS/.$name.tmp"
    if "$VENV/bin/python" - "$MODELS/.$name.tmp" <<'PY'
import sys
from pidetect.errors import PidetectError
from pidetect.inference.detector import Detector
try:
    found = Detector(sys.argv[1])
except PidetectError as exc:
    sys.exit(f"pidetect-install: error: {exc}")
print(f"pidetect-install: model checked: {found.family.name}, {found.numeric_format}, {len(found.labels)} classes "
      f"({found.labels_from})")
PY
    then
        mv -f "$MODELS/.$name.tmp" "$MODELS/$name"
        MODEL_PATH=$MODELS/$name
    else
        rm -f "$MODELS/.$name.tmp"
        die "--model $MODEL_FILE: pidetect cannot use this model (see above)" 78
    fi
fi
chmod -R a+rX "$PREFIX"

# --- 6. Configuration: written once, never overwritten --------------------------------------------
mkdir -p "$CONFIG_DIR"
# the service may save zones from its web UI into its config file (atomically: it needs the folder)
chown root:"$USER_NAME" "$CONFIG_DIR" && chmod 0775 "$CONFIG_DIR"
EXAMPLE=$PREFIX/pidetect.toml.example
CAMERA_SIZE=""
if [ -z "$SOURCE" ] && [ -z "$INSTANCE" ] && command -v rpicam-hello >/dev/null \
        && rpicam-hello --list-cameras 2>/dev/null | grep -Eq '^[0-9]+ : '; then
    # A CSI camera: read it through rpicam-vid, which keeps the venv pure pip (picamera2 from apt
    # breaks when pip's numpy 2 shadows apt's numpy in the same venv).
    SOURCE="pipe:rpicam-vid -t 0 -n --codec yuv420 --width 640 --height 480 --framerate 15 -o -"
    CAMERA_SIZE=$'width = 640\nheight = 480'
    say "found a CSI camera: using rpicam-vid as the source"
fi
toml_string() { "$PYTHON" -c 'import json, sys; print(json.dumps(sys.argv[1]))' "$1"; }
# A camera of several: its own web port, the lowest from 8081 that no other config in /etc/pidetect names
# (8080 is pidetect.service's default) and nothing listens on.
WEB_PORT=8080
if [ -n "$INSTANCE" ] && [ ! -e "$CONFIG" ]; then
    [ -n "$SOURCE" ] || die "--instance $INSTANCE needs --source SPEC for its new config (two cameras cannot both be 'auto')" 2
    WEB_PORT=$("$PYTHON" - "$CONFIG_DIR" <<'PY'
import pathlib, socket, sys, tomllib
taken = set()
for path in pathlib.Path(sys.argv[1]).glob("*.toml"):
    try:
        taken.add(int(tomllib.loads(path.read_text()).get("mjpeg_port", 8080)))
    except Exception:
        taken.add(8080)
taken.add(8080)
port = 8081
while True:
    if port not in taken:
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
                break
            except OSError:
                pass
    port += 1
print(port)
PY
)
fi
# The web UI (display mjpeg) gets a password from the start: on the network (--web-address 0.0.0.0, the
# default) nobody sees the camera without it. Shown once, at the end; kept root:pidetect 0640.
WEB_PASSWORD_FILE=""
WEB_ON=0
case ",${DISPLAY_OUT:-$DEFAULT_DISPLAY}," in *,mjpeg,*) WEB_ON=1 ;; esac
NEW_PASSWORD=""
if [ $WEB_ON = 1 ] && [ ! -e "$CONFIG" ]; then
    WEB_PASSWORD_FILE=/etc/pidetect/web.password
    if [ ! -s "$WEB_PASSWORD_FILE" ]; then
        (umask 027; "$PYTHON" -c 'import secrets; print(secrets.token_urlsafe(12))' > "$WEB_PASSWORD_FILE")
        NEW_PASSWORD=$(head -n1 "$WEB_PASSWORD_FILE")
    fi
    chown root:pidetect "$WEB_PASSWORD_FILE"
    chmod 0640 "$WEB_PASSWORD_FILE"
fi
if [ ! -e "$CONFIG" ]; then
    # the example with this Pi's values set in place: each key once, uncommented where set
    settings=("source=${SOURCE:-auto}" "display=${DISPLAY_OUT:-$DEFAULT_DISPLAY}" "snapshots=true")
    [ -n "$INSTANCE" ] && settings+=("camera_name=$INSTANCE")
    [ -n "$CAMERA_SIZE" ] && settings+=("width=640" "height=480")
    [ -n "$MODEL_PATH" ] && settings+=("model=$MODEL_PATH")
    [ -n "$MQTT_HOST" ] && settings+=("mqtt_host=$MQTT_HOST")
    [ "$RECORD" = 1 ] && settings+=("record=true")
    [ "$WEB_PORT" != 8080 ] && settings+=("mjpeg_port=$WEB_PORT")
    [ "$CORAL" = 1 ] && settings+=("accelerator=auto")
    [ $WEB_ON = 1 ] && settings+=("mjpeg_address=$WEB_ADDRESS")
    [ -n "$WEB_PASSWORD_FILE" ] && settings+=("web_password_file=$WEB_PASSWORD_FILE")
    "$VENV/bin/python" -m pidetect.tools.installed_config "$REPO/deploy/pidetect.toml" "${settings[@]}" \
        > "$CONFIG.new" || { rm -f "$CONFIG.new"; die "could not write $CONFIG (see above)" 1; }
    mv "$CONFIG.new" "$CONFIG"
    chown root:"$USER_NAME" "$CONFIG" && chmod 0664 "$CONFIG"
    say "wrote $CONFIG (source ${SOURCE:-auto}, display ${DISPLAY_OUT:-$DEFAULT_DISPLAY})"
else
    say "kept your $CONFIG"
    if [ -n "$SOURCE$DISPLAY_OUT$MQTT_HOST" ]; then
        say "note: --source/--display/--mqtt only apply to a new config; edit $CONFIG and run: sudo systemctl reload ${UNIT_NAME%.service}"
    fi
    if [ -n "$MODEL_PATH" ]; then
        say "note: installed $MODEL_PATH; to use it set model = \"$MODEL_PATH\" in $CONFIG and run: sudo systemctl reload ${UNIT_NAME%.service}"
    fi
    if [ -e "$EXAMPLE" ] && ! cmp -s "$EXAMPLE" "$REPO/deploy/pidetect.toml"; then
        say "the example config changed in this version; compare: diff -u $EXAMPLE $REPO/deploy/pidetect.toml"
    fi
fi
cp "$REPO/deploy/pidetect.toml" "$EXAMPLE"
# the display actually configured decides whether the HDMI console must give way
CONFIGURED_DISPLAY=$("$VENV/bin/python" - "$CONFIG" <<'PY'
import sys, tomllib
try:
    value = tomllib.load(open(sys.argv[1], "rb")).get("display", "none")
except Exception:
    value = "none"
print(",".join(value) if isinstance(value, list) else value)
PY
)

# --- 7. The unit -------------------------------------------------------------------------------
install -m 0644 "$REPO/systemd/pidetect.service" "$UNIT"
install -m 0644 "$REPO/systemd/pidetect@.service" "$TEMPLATE"
if [ $CORAL = 1 ]; then
    mkdir -p "$DROPIN_DIR"
    {
        echo "# Written by deploy/install.sh --coral: the service may open the Coral Edge TPU."
        echo "[Service]"
        echo "SupplementaryGroups=$CORAL_GROUPS"
        echo "DeviceAllow=char-usb_device rw"
        case " $CORAL_GROUPS " in *" apex "*) echo "DeviceAllow=char-apex rw" ;; esac
        echo "# libusb (inside libedgetpu) watches for USB hotplug over a netlink socket"
        echo "RestrictAddressFamilies=AF_NETLINK"
    } > "$DROPIN_DIR/coral.conf"
fi
if [[ ",$CONFIGURED_DISPLAY," == *",fb,"* ]]; then
    mkdir -p "$DROPIN_DIR"
    cat > "$DROPIN_DIR/hdmi-console.conf" <<'EOF'
# Written by deploy/install.sh because display includes fb: the login prompt on tty1 would draw over
# the picture, so pidetect takes tty1 while it runs.
[Unit]
Conflicts=getty@tty1.service
After=getty@tty1.service
EOF
else
    rm -f "$DROPIN_DIR/hdmi-console.conf"
    rmdir "$DROPIN_DIR" 2>/dev/null || true
fi
systemctl daemon-reload
systemctl enable "$UNIT_NAME" >/dev/null 2>&1
if [ $START = 1 ]; then
    systemctl restart "$UNIT_NAME"
    say "started; follow it with: journalctl -u ${UNIT_NAME%.service} -f"
else
    say "installed and enabled (not started): sudo systemctl start ${UNIT_NAME%.service}"
fi
# Where to look, said last so it is what stays on the screen
ADDRESS=$("$VENV/bin/python" - "$CONFIG" <<'PY'
import sys, tomllib
try:
    config = tomllib.load(open(sys.argv[1], "rb"))
except Exception:
    config = {}
display = config.get("display", "none")
display = display if isinstance(display, list) else str(display).split(",")
print(f"{config.get('mjpeg_address', '127.0.0.1')} {config.get('mjpeg_port', 8080)}" if "mjpeg" in display else "")
PY
)
if [ -n "$ADDRESS" ]; then
    read -r bound port <<< "$ADDRESS"
    echo
    if [ "$bound" = 127.0.0.1 ] || [ "$bound" = ::1 ]; then
        say "web UI: http://127.0.0.1:$port/ on this Pi only (for the network: mjpeg_address = \"0.0.0.0\" in $CONFIG)"
    else
        say "web UI: http://$(hostname).local:$port/"
        for ip in $(hostname -I 2>/dev/null); do
            case "$ip" in *:*) say "        http://[$ip]:$port/" ;; *) say "        http://$ip:$port/" ;; esac
        done
    fi
    if [ -n "$NEW_PASSWORD" ]; then
        say "user pidetect, password: $NEW_PASSWORD"
        say "(shown once; kept in /etc/pidetect/web.password — to change it, write a new one there and run"
        say " sudo systemctl restart ${UNIT_NAME%.service})"
    elif [ -s /etc/pidetect/web.password ]; then
        say "user pidetect, password: in /etc/pidetect/web.password (sudo cat /etc/pidetect/web.password)"
    fi
fi
say "pidetect is on your PATH: pidetect --help"
