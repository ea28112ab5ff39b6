#!/bin/sh
# The rainbow demo (`make demo` runs it after building): a local platform in
# a temp dir, 2,000 chatload clients talking with natural churn, three
# deploys and a rollback, then the verdict from chatload's report, the drain
# time of every old colour from rainbow's record, and the rainbow chart.
# Everything it starts is stopped on exit (also on Ctrl-C); the output
# directory (chart, report, timeline) is kept.
#
# Environment: BUILD (default build), CLIENTS (2000), LIFETIME
# (uniform:10s-30s), OUT (default: a new dir under ${TMPDIR:-/tmp}).
set -eu

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${BUILD:-build}
case $BUILD in /*) ;; *) BUILD=$ROOT/$BUILD ;; esac
CLIENTS=${CLIENTS:-2000}
LIFETIME=${LIFETIME:-uniform:10s-30s}
OUT=${OUT:-$(mktemp -d "${TMPDIR:-/tmp}/rainbow-demo.XXXXXX")}
STATE=$OUT/state
RAINBOW="$BUILD/rainbow --state-dir $STATE"
export RAINBOW_CHATD="$BUILD/chatd"
DRAIN="--settle 2s --poll 0.5s"

for b in rainbow chatd chatload; do
	[ -x "$BUILD/$b" ] || { echo "demo: $BUILD/$b is not built (make all)" >&2; exit 1; }
done
command -v python3 >/dev/null || { echo "demo: python3 is needed" >&2; exit 1; }
ulimit -n 20000 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

WATCH_PID=""
LOAD_PID=""
cleanup() {
	set +e
	[ -n "$LOAD_PID" ] && kill "$LOAD_PID" 2>/dev/null && sleep 1 && kill -9 "$LOAD_PID" 2>/dev/null
	[ -n "$WATCH_PID" ] && kill "$WATCH_PID" 2>/dev/null
	$RAINBOW local down --force >/dev/null 2>&1
	wait 2>/dev/null
}
trap cleanup EXIT
trap 'exit 130' INT TERM

step() { printf '\n== %s\n' "$*"; }

# Three SHAs: the last commits of this checkout when there are three.
SHAS=$(git -C "$ROOT" log --format=%h --abbrev=7 -n 3 2>/dev/null | tr '\n' ' ')
set -- $SHAS
if [ $# -lt 3 ]; then
	set -- 1a2b3c4 5d6e7f8 9a0b1c2
fi
SHA1=$1 SHA2=$2 SHA3=$3

PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
T0=$(date +%s)

step "local platform: switch on 127.0.0.1:$PORT, state in $STATE"
$RAINBOW local up --listen "127.0.0.1:$PORT"

step "first colour: rainbow deploy $SHA1"
$RAINBOW deploy "$SHA1" --replicas 2 $DRAIN

# A continuous timeline for the chart, whatever rainbow command runs.
$RAINBOW watch --poll 0.5s --quiet &
WATCH_PID=$!

step "chatload: $CLIENTS clients, messages, sessions of $LIFETIME"
"$BUILD/chatload" --server "127.0.0.1:$PORT" --clients "$CLIENTS" --ramp 500/s \
	--message-rate 0.2 --lifetime "$LIFETIME" --quiet \
	--report "$OUT/chatload.json" --timeline "$OUT/chatload.csv" \
	--expect-zero-drops --expect-zero-loss 2>"$OUT/chatload.log" &
LOAD_PID=$!

connected() {
	$RAINBOW status -o json | python3 -c '
import json, sys
print(sum(max(c["connections"], 0) for c in json.load(sys.stdin)["colours"]))'
}
i=0
while [ "$(connected)" -lt $((CLIENTS * 95 / 100)) ] && [ $i -lt 60 ]; do
	sleep 0.5
	i=$((i + 1))
done
$RAINBOW status

step "deploy $SHA2 (--no-wait: $SHA1 keeps draining in the background)"
$RAINBOW deploy "$SHA2" --replicas 2 --no-wait $DRAIN
sleep 8
$RAINBOW status

step "deploy $SHA3 (waits until $SHA1 and $SHA2 drained; keeps the last one for rollback)"
$RAINBOW deploy "$SHA3" --replicas 2 --keep-drained 1 $DRAIN
$RAINBOW status

step "rollback (to the kept colour, scaled back up)"
$RAINBOW rollback --keep-drained 1 $DRAIN
$RAINBOW status

step "stop chatload, read its report"
kill -INT "$LOAD_PID"
set +e
wait "$LOAD_PID"
LOAD_RC=$?
set -e
LOAD_PID=""
kill "$WATCH_PID" 2>/dev/null || true
wait "$WATCH_PID" 2>/dev/null || true
WATCH_PID=""

step "rainbow chart"
$RAINBOW chart --report "$OUT/chatload.json"
$RAINBOW status -o json >"$OUT/status.json"

step "verdict"
python3 - "$OUT/chatload.json" "$STATE/record.jsonl" "$OUT/status.json" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
# What finally became of each colour: its state now, or deleted.
final = {c["sha"]: c["state"] for c in json.load(open(sys.argv[3]))["colours"]}
fates = {"live": "live again (rolled back to)", "kept": "kept at 0 replicas",
         "draining": "still draining", "starting": "starting", "failed": "failed"}
print("%d dropped connections, %d lost messages" % (r["dropped"], r["messages_lost"]))
print("  (%d connections, %d messages delivered, %d bounced at logout, server closes %d)" %
      (r["connections"], r["messages_delivered"], r["messages_bounced"],
       r["closed_by_server_total"]))
print("drain time per colour:")
for line in open(sys.argv[2]):
    e = json.loads(line)
    if e.get("why") == "drained":
        print("  chat-%s  %5.1fs  (then %s)" % (e["sha"], e["drain_ms"] / 1000.0,
              fates.get(final.get(e["sha"]), "deleted")))
sys.exit(0 if r["dropped"] == 0 and r["messages_lost"] == 0 else 1)
EOF
VERDICT=$?
echo "chart:    $STATE/chart.png ($STATE/chart.svg)"
echo "report:   $OUT/chatload.json"
echo "took $(($(date +%s) - T0))s"
[ "$LOAD_RC" -eq 0 ] || { echo "demo: chatload exited $LOAD_RC (see $OUT/chatload.log)" >&2; exit 1; }
exit $VERDICT
