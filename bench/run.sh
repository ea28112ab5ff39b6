#!/bin/bash
# Runs the benchmarks and assembles docs/benchmarks.md (what `make bench`
# runs, after building the plain optimized programs and installing Prosody
# and ejabberd with `scripts/deps.sh bench`).
#
#   [BUILD=build] bench/run.sh [PIECE...]
#
# PIECE: chatd http fairness chatload workers compare cluster rainbow drain assist scale
# (the default: all, in this order). drain measures the drain forecast;
# assist compares the ways of emptying the old colour on the same load
# (natural drain, --drain-assist at two rates, --on-max-drain shutdown, a
# RollingUpdate-style replacement): `bench/run.sh drain assist` runs both.
# Each piece prints a Markdown section on stdout; its standard error goes to
# the terminal. The sections replace those of the same pieces in the
# document; the others are kept. Extra arguments for one piece:
# BENCH_ARGS_<piece>="...", e.g. BENCH_ARGS_chatd="--only plain" (for
# trying things out; BENCH_DOC=/tmp/b.md writes elsewhere than docs/).
# BENCH_QUICK=1: the pieces that have one take --quick (smaller sizes and
# windows, still 3 runs): the whole run in about 10 minutes instead of 30.
# The method every piece follows is in bench/method.md (copied into the
# document's head).
set -uo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT" || exit 1
BUILD=${BUILD:-build}
DOC=${BENCH_DOC:-docs/benchmarks.md}
ORDER="chatd http fairness chatload workers compare cluster rainbow drain assist scale"
ALL="$ORDER"
# Pieces whose command takes --quick (BENCH_QUICK=1).
QUICK_PIECES="chatd chatload workers compare cluster assist scale"
QUICK=${BENCH_QUICK:-0}

usage() {
	sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2
	exit 2
}

pieces=()
for p in "$@"; do
	case $p in -h | --help) usage ;; esac
	case " $ALL " in
	*" $p "*) pieces+=("$p") ;;
	*) echo "bench/run.sh: unknown piece '$p' (pieces: $ALL)" >&2; usage ;;
	esac
done
[ ${#pieces[@]} -gt 0 ] || read -r -a pieces <<<"$ORDER"

for prog in chatd chatload; do
	if [ ! -x "$BUILD/$prog" ]; then
		echo "bench/run.sh: $BUILD/$prog is missing: make BUILD=$BUILD all" >&2
		exit 1
	fi
done

# The open-files limit of this machine is 20,000 per process; the pieces
# hold up to 15,000 sessions in one process.
ulimit -n 20000 2>/dev/null || ulimit -n "$(ulimit -Hn)"

OUT=$(mktemp -d /tmp/rainbow-bench.XXXXXX)
trap 'rm -rf "$OUT"' EXIT

# The command each piece runs (shown in its section) and its fallback title.
command_of() {
	local extra
	extra=$(eval "printf %s \"\${BENCH_ARGS_$1:-}\"")
	case $1 in
	chatd) echo "python3 bench/chatd_idle.py --build $BUILD --no-write${extra:+ $extra}" ;;
	http) echo "python3 bench/http_probe.py --build $BUILD${extra:+ $extra}" ;;
	fairness) echo "python3 bench/fairness.py --build $BUILD${extra:+ $extra}" ;;
	chatload) echo "python3 bench/chatload_bench.py --build $BUILD${extra:+ $extra}" ;;
	workers) echo "python3 bench/workers_bench.py --build $BUILD${extra:+ $extra}" ;;
	compare) echo "BUILD=$BUILD bench/compare_servers.sh${extra:+ $extra}" ;;
	cluster) echo "python3 bench/cluster_bench.py --build $BUILD${extra:+ $extra}" ;;
	rainbow) echo "python3 bench/rainbow_bench.py --build $BUILD${extra:+ $extra}" ;;
	drain) echo "python3 bench/drain_bench.py --build $BUILD${extra:+ $extra}" ;;
	assist) echo "python3 bench/assist_bench.py --build $BUILD${extra:+ $extra}" ;;
	scale) echo "python3 bench/scale_bench.py --build $BUILD${extra:+ $extra}" ;;
	esac
}
title_of() {
	case $1 in
	chatd) echo "chatd: memory per session, CPU per login, idle CPU, round trip" ;;
	http) echo "chatd HTTP probe latency under held connections (issue 9)" ;;
	fairness) echo "chatd: a quiet client's ping while another client floods (issue 9)" ;;
	chatload) echo "chatload: memory per client, logins/s" ;;
	workers) echo "chatload split over worker processes: 40,000 clients messaging across 4 workers (issue 16)" ;;
	compare) echo "chatd, Prosody and ejabberd under the same chatload, plaintext and STARTTLS" ;;
	cluster) echo "Cluster routing: forwarded messages (issue 4)" ;;
	rainbow) echo "rainbow on the local platform (issue 6)" ;;
	drain) echo "Drain forecast accuracy (issue 14)" ;;
	assist) echo "Emptying a colour: natural, assisted, shutdown, RollingUpdate (issue 15)" ;;
	scale) echo "The local platform at scale: 40,000 clients, memory per connection (issue 10)" ;;
	esac
}
script_of() {
	case $1 in
	chatd) echo bench/chatd_idle.py ;;
	http) echo bench/http_probe.py ;;
	fairness) echo bench/fairness.py ;;
	chatload) echo bench/chatload_bench.py ;;
	workers) echo bench/workers_bench.py ;;
	compare) echo bench/compare_servers.sh ;;
	cluster) echo bench/cluster_bench.py ;;
	rainbow) echo bench/rainbow_bench.py ;;
	drain) echo bench/drain_bench.py ;;
	assist) echo bench/assist_bench.py ;;
	scale) echo bench/scale_bench.py ;;
	esac
}

SHA=$(git rev-parse --short=7 HEAD 2>/dev/null || echo unknown)
# The document this run writes is not a change to what is measured.
if [ -n "$(git status --porcelain --untracked-files=no -- . ":(exclude)$DOC" 2>/dev/null)" ]; then
	SHA="$SHA + uncommitted changes"
fi

json_str() {
	python3 -c 'import json,sys; print(json.dumps(sys.argv[1]))' "$1"
}

# "busy idle" jiffies of all CPUs so far (/proc/stat; iowait counts as idle).
cpu_jiffies() {
	awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 + $9, $5 + $6; exit }' /proc/stat
}
# The machine's load between two cpu_jiffies samples: "busy N % of M cores".
machine_busy() {
	local b0 i0 b1 i1
	read -r b0 i0 <<<"$1"
	read -r b1 i1 <<<"$2"
	awk -v b="$((b1 - b0))" -v i="$((i1 - i0))" -v n="$(nproc)" \
		'BEGIN { t = b + i; printf "busy %.0f %% of %d cores", t ? 100 * b / t : 0, n }'
}

ran=()
failed=0
start_all=$(date +%s)
for p in "${pieces[@]}"; do
	script=$(script_of "$p")
	cmd=$(command_of "$p")
	if [ "$QUICK" = 1 ]; then
		case " $QUICK_PIECES " in *" $p "*) cmd="$cmd --quick" ;; esac
	fi
	date=$(date -u '+%Y-%m-%d %H:%M UTC')
	j0=$(cpu_jiffies)
	l0=$(cut -d' ' -f1 /proc/loadavg)
	echo "bench/run.sh: [$p] $cmd" >&2
	t0=$(date +%s)
	if [ -f "$script" ]; then
		# stdout is the section; stderr goes to the terminal and is kept
		# for the section when the piece fails.
		bash -c "$cmd" >"$OUT/$p.md" 2> >(tee "$OUT/$p.err" >&2)
		rc=$?
		wait
	else
		echo "$script does not exist (yet): nothing measured." >"$OUT/$p.md"
		: >"$OUT/$p.err"
		rc=127
	fi
	secs=$(($(date +%s) - t0))
	load="$(machine_busy "$j0" "$(cpu_jiffies)"), load average $l0 → $(cut -d' ' -f1 /proc/loadavg)"
	[ "$rc" = 0 ] || failed=$((failed + 1))
	echo "bench/run.sh: [$p] exit $rc after ${secs}s" >&2
	cat >"$OUT/$p.meta" <<EOF
{"title": $(json_str "$(title_of "$p")"), "command": $(json_str "$cmd"),
 "reproduce": $(json_str "BUILD=$BUILD bench/run.sh $p"), "rc": $rc, "seconds": $secs,
 "date": $(json_str "$date"), "sha": $(json_str "$SHA"), "load": $(json_str "$load"),
 "stderr_tail": $(json_str "$(tail -n 15 "$OUT/$p.err")")}
EOF
	ran+=("$p")
	if [ "$p" = drain ] && [[ " ${pieces[*]} " != *" assist "* ]]; then
		echo "bench/run.sh: the comparison of ways to empty a colour (natural, assisted," \
			"shutdown, RollingUpdate) is the piece 'assist': bench/run.sh assist" >&2
	fi
done
total=$(($(date +%s) - start_all))

cpu=$(sed -n 's/^model name[[:space:]]*:[[:space:]]*//p' /proc/cpuinfo | head -n1)
cat >"$OUT/header.md" <<EOF
# Benchmarks

Written by \`make bench\` (bench/run.sh): it builds the plain optimized
programs (\`-O2\`, no sanitizers) into \`build/\`, installs Prosody and ejabberd
from Debian (\`scripts/deps.sh bench\`) and runs every piece below, in this
order: ${ORDER// /, }.
Every figure is printed by the script named in its section, never typed in;
each section gives the command that reproduces it (\`bench/run.sh PIECE\`
reruns one piece and keeps the other sections; \`BENCH_QUICK=1 make bench\`
is the smaller, faster run).

| machine | |
|---|---|
| CPUs (nproc) | $(nproc) |
| CPU model | ${cpu:-unknown} |
| kernel | $(uname -sr) |
| open-files limit | $(ulimit -n) per process |
| last run | $(date -u '+%Y-%m-%d %H:%M UTC'), commit \`$SHA\`, build \`$BUILD\`, pieces: ${ran[*]} (${total} s) |
| load average at the end | $(cut -d' ' -f1-3 /proc/loadavg) |
$([ "$QUICK" = 1 ] && printf '| mode | quick (BENCH_QUICK=1): smaller sizes and windows |\n')

$(cat bench/method.md)
EOF

mkdir -p "$(dirname "$DOC")"
order_csv=${ORDER// /,}
ran_csv=$(IFS=,; echo "${ran[*]}")
python3 bench/lib/assemble.py --doc "$DOC" --dir "$OUT" --order "$order_csv" --ran "$ran_csv" ||
	exit 1
echo "bench/run.sh: wrote $DOC (${total}s, $failed piece(s) failed)" >&2
[ "$failed" = 0 ]
