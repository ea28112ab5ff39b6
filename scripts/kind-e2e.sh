#!/bin/sh
# The Kubernetes end-to-end on kind (docs/kubernetes.md, "The kind
# end-to-end"). Needs docker, kind and kubectl; cannot run without a Docker
# daemon.
#
#   KUBE_PROXY_MODE=iptables|nftables|ipvs scripts/kind-e2e.sh
#   scripts/kind-e2e.sh render DIR [SHA]   only write the manifests a run
#                                          applies into DIR (no cluster)
#
# Environment (defaults): KUBE_PROXY_MODE (iptables), KIND_CLUSTER
# (rainbow-e2e), NAMESPACE (rainbow), CLIENTS (300), DURATION (240 s),
# LIFETIME (exp:20s), OUT (build/kind-e2e-MODE: the artifacts), NODE_CIDR
# (render: the node network's IPv4 CIDR), KEEP_CLUSTER=1 (keep the cluster;
# a re-run reuses it with a fresh namespace).
#
# 1. builds the chatd, chatload and rainbow images for this commit and tags
#    the chatd image under three more SHAs (same binary, four colours);
# 2. creates the kind cluster (k8s/kind-config.yaml, kube-proxy in the mode
#    asked for) or reuses it, loads the images;
# 3. applies k8s/ (demo credentials) in NAMESPACE, the cluster secret, and a
#    NetworkPolicy that lets the nodes' addresses read /metrics (rainbow on
#    this host reads counts through the API server's pod proxy);
# 4. records connections per colour from this host (`rainbow watch`: the
#    chart's timeline) and deploys the first SHA from this host;
# 5. starts chatload as the in-cluster Job (through the chat Service,
#    kube-proxy in the path), then two deploys and a rollback from this host
#    while it runs (--no-wait);
# 6. deploys the fourth SHA with the in-cluster rainbow Job (its
#    ServiceAccount and Role, counts from pod IPs); once it has switched and
#    the older colours drain, deletes its pod: the Job's retry, a new pod
#    with an empty state dir, must finish the drain and complete;
# 7. passes when chatload's report has 0 dropped connections and 0 lost
#    messages, the Job completed after the retry, and only the last colour
#    is left. Artifacts in OUT: the chart, `rainbow history`, chatload's
#    report, the Job's log, the rendered manifests, the cluster state; never
#    the kubeconfig (it holds the cluster's client key: kept in a temp dir).
set -eu
cd "$(dirname "$0")/.."

MODE=${KUBE_PROXY_MODE:-iptables}
CLUSTER=${KIND_CLUSTER:-rainbow-e2e}
NS=${NAMESPACE:-rainbow}
CLIENTS=${CLIENTS:-300}
DURATION=${DURATION:-240}
LIFETIME=${LIFETIME:-exp:20s}
OUT=${OUT:-build/kind-e2e-$MODE}

step() { echo "kind-e2e: [$(date -u +%H:%M:%S)] $*"; }
fail() {
	echo "kind-e2e: FAIL ($MODE): $*" >&2
	exit 1
}

# One API hiccup is not a failed run: kubectl calls are tried 5 times.
retry() {
	n=1
	until "$@"; do
		[ "$n" -ge 5 ] && return 1
		echo "kind-e2e: retrying ($n): $*" >&2
		sleep $((n * 2))
		n=$((n + 1))
	done
}

in_ns() {
	sed "s/^  namespace: rainbow\$/  namespace: $NS/"
}

# The manifests a run applies, in namespace $NS (no cluster, no kubectl).
render() {
	dir=$1
	sha=$2
	mkdir -p "$dir/base"
	# sized for CLIENTS: pods of the Indexed Job and workers per pod
	CLIENTS=$CLIENTS DURATION=$DURATION LIFETIME=$LIFETIME NAMESPACE=$NS \
		scripts/chatload-job.sh >"$dir/chatload-job.yaml"
	sed "s/SHA_TO_DEPLOY/$sha/g" k8s/jobs/rainbow-deploy-job.yaml | in_ns >"$dir/rainbow-job.yaml"
	rel=$(realpath --relative-to="$dir/base" k8s)
	cat >"$dir/base/kustomization.yaml" <<-EOF
		# k8s/ (demo credentials) in namespace $NS
		apiVersion: kustomize.config.k8s.io/v1beta1
		kind: Kustomization
		namespace: $NS
		resources:
		  - $rel
	EOF
	if [ -n "${NODE_CIDR:-}" ]; then
		cat >"$dir/base/metrics-from-nodes.yaml" <<-EOF
			# rainbow outside the cluster reads /metrics through the API
			# server's pod proxy, which connects from the nodes' addresses
			apiVersion: networking.k8s.io/v1
			kind: NetworkPolicy
			metadata:
			  name: chat-metrics-from-nodes
			spec:
			  podSelector:
			    matchLabels:
			      app: chat
			  policyTypes: ["Ingress"]
			  ingress:
			    - from:
			        - ipBlock:
			            cidr: $NODE_CIDR
			      ports:
			        - port: http
			          protocol: TCP
		EOF
		echo "  - metrics-from-nodes.yaml" >>"$dir/base/kustomization.yaml"
	fi
}

if [ "${1:-}" = render ]; then
	[ $# -ge 2 ] || { echo "usage: $0 render DIR [SHA]" >&2; exit 2; }
	render "$2" "${3:-abc1234}"
	exit 0
fi

for tool in docker kind kubectl; do
	command -v "$tool" >/dev/null || { echo "kind-e2e: $tool is required" >&2; exit 2; }
done
case $MODE in iptables | nftables | ipvs) ;; *) echo "kind-e2e: bad KUBE_PROXY_MODE $MODE" >&2; exit 2 ;; esac
rm -rf "$OUT"
mkdir -p "$OUT"
# The kubeconfig holds the cluster's client key: never under $OUT (uploaded).
KCDIR=$(mktemp -d)
export KUBECONFIG="$KCDIR/kubeconfig"

SHA0=$(git rev-parse --short=7 HEAD)
# Three more colours of the same binary: SHAs derived from this one.
derive() { printf '%s-%s' "$SHA0" "$1" | sha1sum | cut -c1-7; }
SHA1=$(derive 1)
SHA2=$(derive 2)
SHA3=$(derive 3)
JOB=rainbow-deploy-$SHA3
echo "kind-e2e: mode=$MODE namespace=$NS colours $SHA0 $SHA1 $SHA2 $SHA3"

step "building images"
for prog in chatd chatload rainbow; do
	docker build -q -f "docker/$prog.Dockerfile" --build-arg GIT_SHA="$SHA0" \
		-t "rainbow/$prog:$SHA0" -t "rainbow/$prog:latest" .
done
for s in $SHA1 $SHA2 $SHA3; do docker tag "rainbow/chatd:$SHA0" "rainbow/chatd:$s"; done

step "building rainbow for this host"
make -j2 BUILD=build build/rainbow
RAINBOW=$PWD/build/rainbow

rb() {
	"$RAINBOW" --platform kubernetes --kubeconfig "$KUBECONFIG" --namespace "$NS" \
		-P template=k8s/pod-template.yaml --state-dir "$OUT/state" "$@"
}

WATCH_PID=
cleanup() {
	rc=$?
	set +e
	[ -z "$WATCH_PID" ] || kill "$WATCH_PID" 2>/dev/null
	kubectl -n "$NS" get all,events,networkpolicies >"$OUT/cluster-state.txt" 2>&1
	kubectl -n "$NS" logs -l app=chat --all-containers --prefix --tail=200 \
		>"$OUT/chatd-logs.txt" 2>&1
	kubectl -n "$NS" logs -l job-name="$JOB" --all-containers --prefix --tail=-1 \
		>"$OUT/rainbow-job.log" 2>&1
	rb history >"$OUT/rainbow-history.txt" 2>&1
	"$RAINBOW" --state-dir "$OUT/watch" chart --out "$OUT/rainbow-chart" >/dev/null 2>&1
	[ "${KEEP_CLUSTER:-0}" = 1 ] || kind delete cluster --name "$CLUSTER"
	rm -rf "$KCDIR"
	# The artifacts are uploaded: no credential may be among them.
	if grep -rlE 'client-key-data|client-certificate-data|PRIVATE KEY' "$OUT"; then
		echo "kind-e2e: FAIL: a credential in $OUT (above)" >&2
		rc=1
	fi
	exit $rc
}
trap cleanup EXIT

if kind get clusters 2>/dev/null | grep -qx "$CLUSTER"; then
	step "reusing cluster $CLUSTER: namespace $NS made afresh"
	kind get kubeconfig --name "$CLUSTER" >"$KUBECONFIG"
	retry kubectl delete namespace "$NS" --ignore-not-found --wait=true --timeout=300s
else
	step "creating cluster (kube-proxy $MODE)"
	sed "s/kubeProxyMode: .*/kubeProxyMode: $MODE/" k8s/kind-config.yaml >"$OUT/kind-config.yaml"
	kind create cluster --name "$CLUSTER" --config "$OUT/kind-config.yaml" --wait 120s \
		--kubeconfig "$KUBECONFIG"
fi
kind load docker-image --name "$CLUSTER" rainbow/chatd:"$SHA0" rainbow/chatd:"$SHA1" \
	rainbow/chatd:"$SHA2" rainbow/chatd:"$SHA3" rainbow/chatload:latest rainbow/rainbow:latest

step "applying k8s/ in namespace $NS"
NODE_CIDR=$(docker network inspect kind -f '{{range .IPAM.Config}}{{.Subnet}} {{end}}' |
	tr ' ' '\n' | grep -m1 '\.' || true)
[ -n "$NODE_CIDR" ] || fail "no IPv4 subnet on docker network kind"
export NODE_CIDR
render "$OUT/manifests" "$SHA3"
retry kubectl apply -k "$OUT/manifests/base"
cluster_secret() {
	kubectl -n "$NS" create secret generic chat-cluster --dry-run=client -o yaml \
		--from-literal=secret="$(od -An -N32 -tx1 /dev/urandom | tr -d ' \n')" |
		kubectl apply -f -
}
retry cluster_secret
control_secret() {
	kubectl -n "$NS" create secret generic chat-control --dry-run=client -o yaml \
		--from-literal=token="$(od -An -N32 -tx1 /dev/urandom | tr -d ' \n')" |
		kubectl apply -f -
}
retry control_secret

step "recording connections per colour (rainbow watch)"
"$RAINBOW" --platform kubernetes --kubeconfig "$KUBECONFIG" --namespace "$NS" \
	--state-dir "$OUT/watch" watch --quiet --poll 1s >"$OUT/watch.log" 2>&1 &
WATCH_PID=$!

step "deploy $SHA0 (first colour, from this host)"
rb deploy "$SHA0" --replicas 2 --ready-timeout 180s

step "starting chatload ($CLIENTS clients, ${DURATION}s, lifetime $LIFETIME)"
retry kubectl apply -f "$OUT/manifests/chatload-job.yaml"
# The pod exists only some time after the Job: wait for it, then for ready.
end=$(($(date +%s) + 180))
until [ -n "$(kubectl -n "$NS" get pod -l job-name=chatload -o name 2>/dev/null)" ]; do
	[ "$(date +%s)" -lt "$end" ] || fail "the chatload Job made no pod in 180 s"
	sleep 2
done
retry kubectl -n "$NS" wait --for=condition=ready pod -l job-name=chatload --timeout=180s
# the Indexed Job's pods (CLIENTS over 20,000 takes more than one)
LOAD_PODS=$(sed -n 's/^  completions: \([0-9]*\) # PODS$/\1/p' "$OUT/manifests/chatload-job.yaml")
sleep 20 # let the clients log in before the first switch

for s in $SHA1 $SHA2; do
	step "deploy $s (from this host)"
	rb deploy "$s" --replicas 2 --ready-timeout 180s --no-wait
	rb status
	sleep 15
done
step "rollback to $SHA1"
rb rollback "$SHA1" --no-wait
rb status
sleep 15

step "deploy $SHA3 with the in-cluster rainbow Job"
retry kubectl apply -f "$OUT/manifests/rainbow-job.yaml"
end=$(($(date +%s) + 300))
until [ "$(kubectl -n "$NS" get service chat -o 'jsonpath={.spec.selector.rainbow\.chat/sha}' \
	2>/dev/null)" = "$SHA3" ]; do
	[ "$(date +%s)" -lt "$end" ] || fail "the rainbow Job did not switch to $SHA3 in 300 s"
	sleep 2
done
sleep 5 # draining now: older colours still hold clients
FIRST=$(kubectl -n "$NS" get pod -l job-name="$JOB" -o name)
[ -n "$FIRST" ] || fail "no pod for Job $JOB"
step "deleting the Job's pod mid-drain: $FIRST"
rb status
retry kubectl -n "$NS" delete "$FIRST" --wait=false

step "waiting for the Job's retry and for chatload"
end=$(($(date +%s) + DURATION + 600))
while :; do
	job_ok=$(kubectl -n "$NS" get job "$JOB" -o 'jsonpath={.status.succeeded}' 2>/dev/null || true)
	load_ok=$(kubectl -n "$NS" get job chatload -o 'jsonpath={.status.succeeded}' 2>/dev/null || true)
	load_bad=$(kubectl -n "$NS" get job chatload -o 'jsonpath={.status.failed}' 2>/dev/null || true)
	[ "${load_bad:-0}" -ge 1 ] && break
	[ "${job_ok:-0}" -ge 1 ] && [ "${load_ok:-0}" -ge "$LOAD_PODS" ] && break
	[ "$(date +%s)" -lt "$end" ] || break
	sleep 5
done
# the report is in the log of pod 0, the coordinator
retry kubectl -n "$NS" logs --tail=-1 \
	-l job-name=chatload,batch.kubernetes.io/job-completion-index=0 >"$OUT/chatload.log"
tail -n 60 "$OUT/chatload.log"
rb status
[ "${load_ok:-0}" -ge "$LOAD_PODS" ] || fail "chatload's expectations failed or it did not finish (see $OUT/chatload.log)"
[ "${job_ok:-0}" -ge 1 ] || fail "the rainbow Job did not complete after its pod was deleted"
PODS=$(kubectl -n "$NS" get pod -l job-name="$JOB" -o name)
echo "$PODS" | grep -qvx "$FIRST" || fail "the Job completed without a retry pod ($PODS)"
LEFT=$(kubectl -n "$NS" get deployments -l app=chat -o name | tr '\n' ' ')
[ "$LEFT" = "deployment.apps/chat-$SHA3 " ] || fail "colours left: $LEFT (want only chat-$SHA3)"
step "PASS ($MODE): 0 dropped connections, 0 lost messages; the rainbow Job's retry converged"
