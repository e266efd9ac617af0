# Sourced by the checks that run inside a throw-away container (tests/nspawn/checks.sh and
# tests/nspawn-arm64/checks.sh): one line per check in /out/results ("PASS name" / "FAIL name: why"),
# everything the checks print in /out/log.
set -u
RESULTS=/out/results
LOG=/out/log
: > "$RESULTS"
exec >>"$LOG" 2>&1
set -x

pass() { echo "PASS $1" >> "$RESULTS"; }
fail() { echo "FAIL $1: $2" >> "$RESULTS"; }
expect() { local name=$1 why=$2; shift 2; if "$@"; then pass "$name"; else fail "$name" "$why"; fi; }
wait_for() { local seconds=$1; shift; local i; for i in $(seq $((seconds * 5))); do "$@" && return 0; sleep 0.2; done; return 1; }
prop() { systemctl show -p "$1" --value pidetect.service; }
journal_has() { journalctl -u pidetect --no-pager -o cat "$@" | grep -q .; }
