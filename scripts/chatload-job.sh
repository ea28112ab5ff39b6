#!/bin/sh
# Prints the chatload Job (k8s/jobs/chatload-job.yaml) sized for CLIENTS:
#
#   CLIENTS=50000 scripts/chatload-job.sh | kubectl apply -f -
#
# Environment (defaults): CLIENTS (500), DURATION (300 s), LIFETIME
# (exp:60s), MESSAGE_RATE (0.2 per client per second), NAMESPACE (rainbow).
# PODS = ceil(CLIENTS / 20000) pods (an Indexed Job: completions and
# parallelism), each running ceil(CLIENTS / PODS / 10000) chatload worker
# processes: 20,000 clients per pod stay below the 28,232 ephemeral ports a
# pod has toward one ClusterIP:port, 10,000 per process below the 20,000
# open files each gets (docs/kubernetes.md, "chatload at any size").
set -eu
cd "$(dirname "$0")/.."

CLIENTS=${CLIENTS:-500}
DURATION=${DURATION:-300}
LIFETIME=${LIFETIME:-exp:60s}
MESSAGE_RATE=${MESSAGE_RATE:-0.2}
NS=${NAMESPACE:-rainbow}

case $CLIENTS in
'' | *[!0-9]*) echo "chatload-job: CLIENTS=$CLIENTS: expected a positive number" >&2; exit 2 ;;
esac
if [ "$CLIENTS" -lt 1 ] || [ "$CLIENTS" -gt 10000000 ]; then
	echo "chatload-job: CLIENTS=$CLIENTS: expected 1..10000000" >&2
	exit 2
fi
PODS=$(((CLIENTS + 19999) / 20000))

# The value of env var $1: the line after "- name: $1", and only that one.
set_env() {
	sed "/- name: $1\$/{n;s/value: .*/value: \"$2\"/;}"
}

set_env CLIENTS "$CLIENTS" <k8s/jobs/chatload-job.yaml | set_env PODS "$PODS" |
	set_env DURATION "$DURATION" | set_env LIFETIME "$LIFETIME" |
	set_env MESSAGE_RATE "$MESSAGE_RATE" |
	sed -e "s/^  completions: 1 # PODS\$/  completions: $PODS # PODS/" \
		-e "s/^  parallelism: 1 # PODS\$/  parallelism: $PODS # PODS/" \
		-e "s/^  namespace: rainbow\$/  namespace: $NS/"
