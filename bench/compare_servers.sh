#!/bin/bash
# chatd side by side with Prosody and ejabberd: the same chatload runs
# against each, with the configuration files in bench/servers/ and the same
# accounts and certificate: 2,000 and 10,000 idle plaintext sessions, 2,000
# over STARTTLS, then a message load, each 3 times on a fresh server; prints
# a Markdown section (tables, ratios, machine load) on stdout.
#
#   BUILD=build bench/compare_servers.sh [bench/lib/compare.py options]
#   e.g. bench/compare_servers.sh --quick
#        bench/compare_servers.sh --only tls2000 --servers chatd,prosody
#
# Needs the Debian packages prosody and ejabberd (`scripts/deps.sh bench`)
# and the programs in $BUILD (chatd, chatload). Run as root (the servers are
# started as their own users prosody and ejabberd) or as a user that can
# start them. Everything listens on 127.0.0.1 only, on unused ports, from a
# private temporary directory that is removed at the end; every process
# started is stopped at the end, also on error or Ctrl-C.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${BUILD:-build}
cd "$ROOT"

die() {
	echo "compare_servers: $*" >&2
	exit 1
}

for prog in "$BUILD/chatd" "$BUILD/chatload"; do
	[ -x "$prog" ] || die "$prog is not built (make BUILD=$BUILD all)"
done
command -v prosody >/dev/null || die "prosody is not installed (scripts/deps.sh bench)"
[ -x /usr/sbin/ejabberdctl ] && command -v erl >/dev/null ||
	die "ejabberd is not installed (scripts/deps.sh bench)"
# Where Debian's ejabberdctl finds ejabberd's Erlang applications.
EJABBERD_ERL_LIBS=$(sed -n "s/^ERL_LIBS='\{0,1\}\([^']*\)'\{0,1\}$/\1/p" /usr/sbin/ejabberdctl | head -n1)
export EJABBERD_ERL_LIBS=${EJABBERD_ERL_LIBS:-/usr/lib/x86_64-linux-gnu}
command -v setpriv >/dev/null || die "setpriv (util-linux) is missing"
[ "$(id -u)" = 0 ] || die "run as root: the servers are started as users prosody and ejabberd"

# The Debian packages ship system services that listen on every address
# (5222, 5269, 5280, epmd 4369). Installing them must not leave those
# running: disable them and stop a running instance through its own init
# script (only when its pid file names a live process, so that stopping
# never starts anything such as epmd).
disable_service() {
	local svc=$1 pidfile=$2
	if [ -d /run/systemd/system ] && command -v systemctl >/dev/null; then
		systemctl disable --now "$svc" >/dev/null 2>&1 || true
	elif command -v update-rc.d >/dev/null && [ -e "/etc/init.d/$svc" ]; then
		update-rc.d "$svc" disable >/dev/null 2>&1 || true
		if [ -s "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
			echo "compare_servers: stopping the system $svc service" >&2
			"/etc/init.d/$svc" stop >/dev/null 2>&1 || true
		fi
	fi
}
disable_service prosody /run/prosody/prosody.pid
disable_service ejabberd /run/ejabberd/ejabberd.pid

# Open-files limit: 20,000 per process on this machine; servers and
# chatload inherit it (setpriv does not reset limits, su would).
ulimit -n 20000 2>/dev/null || ulimit -n "$(ulimit -Hn)"

TMP=$(mktemp -d /tmp/rainbow-compare.XXXXXX)
chmod 755 "$TMP"
cleanup() {
	local rc=$? pid
	trap - EXIT INT TERM
	if [ -n "${PY:-}" ] && kill -0 "$PY" 2>/dev/null; then
		kill -TERM "$PY" 2>/dev/null || true
		wait "$PY" 2>/dev/null || true
	fi
	# Whatever compare.py started and did not stop (it records every pid;
	# each server runs in its own session, so its group is its pid).
	if [ -f "$TMP/pids" ]; then
		while read -r pid; do
			if kill -0 "$pid" 2>/dev/null; then
				kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
				sleep 2
				kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
			fi
		done <"$TMP/pids"
	fi
	if [ -n "${KEEP_TMP:-}" ]; then
		echo "compare_servers: kept $TMP" >&2
	else
		rm -rf "$TMP"
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# One certificate for all three servers (STARTTLS), for "localhost".
openssl req -x509 -newkey rsa:2048 -nodes -subj /CN=localhost \
	-addext subjectAltName=DNS:localhost -days 2 \
	-keyout "$TMP/key.pem" -out "$TMP/cert.pem" 2>/dev/null ||
	die "openssl could not make a certificate"

# Bounded: every phase has its own timeouts; this caps the whole run.
timeout --foreground -k 10 "${COMPARE_TIMEOUT:-2400}" \
	python3 bench/lib/compare.py --build "$BUILD" --tmp "$TMP" \
	--cert "$TMP/cert.pem" --key "$TMP/key.pem" "$@" &
PY=$!
wait "$PY"
