#!/bin/sh
# The Kubernetes end-to-end on kind (docs/kubernetes.md). Needs docker, kind
# and kubectl; cannot run on machines without a Docker daemon.
#
#   KUBE_PROXY_MODE=iptables|nftables|ipvs scripts/kind-e2e.sh
#
# 1. builds the chatd, chatload and rainbow images for this commit, and
#    tags the chatd image under three more SHAs (same binary, four colours);
# 2. creates a kind cluster (k8s/kind-config.yaml, kube-proxy in the mode
#    asked for) and loads the images;
# 3. applies k8s/ and deploys the first SHA with rainbow (run here, outside
#    the cluster: kubeconfig credentials, metrics through the pod proxy);
# 4. starts chatload in the cluster (through the chat Service, kube-proxy in
#    the path), then three deploys and one rollback while it runs;
# 5. waits for chatload: the Job succeeds only when its report has 0
#    dropped connections and 0 lost messages (--expect-zero-drops
#    --expect-zero-loss), prints the report, prunes drained colours.
# KEEP_CLUSTER=1 keeps the cluster afterwards.
set -eu
cd "$(dirname "$0")/.."

MODE=${KUBE_PROXY_MODE:-iptables}
CLUSTER=${KIND_CLUSTER:-rainbow-e2e}
CLIENTS=${CLIENTS:-300}
DURATION=${DURATION:-240}
OUT=${OUT:-build/kind-e2e-$MODE}
NS=rainbow

for tool in docker kind kubectl; do
	command -v "$tool" >/dev/null || { echo "kind-e2e: $tool is required" >&2; exit 2; }
done
case $MODE in iptables|nftables|ipvs) ;; *) echo "kind-e2e: bad KUBE_PROXY_MODE $MODE" >&2; exit 2;; esac
mkdir -p "$OUT"

SHA0=$(git rev-parse --short=7 HEAD)
# Three more colours of the same binary: SHAs derived from this one.
derive() { printf '%s-%s' "$SHA0" "$1" | sha1sum | cut -c1-7; }
SHA1=$(derive 1); SHA2=$(derive 2); SHA3=$(derive 3)
echo "kind-e2e: mode=$MODE colours $SHA0 $SHA1 $SHA2 $SHA3"

step() { echo "kind-e2e: [$(date -u +%H:%M:%S)] $*"; }

step "building images"
for prog in chatd chatload rainbow; do
	docker build -q -f "docker/$prog.Dockerfile" --build-arg GIT_SHA="$SHA0" \
		-t "rainbow/$prog:$SHA0" -t "rainbow/$prog:latest" .
done
for s in $SHA1 $SHA2 $SHA3; do docker tag "rainbow/chatd:$SHA0" "rainbow/chatd:$s"; done

step "building rainbow for this host"
make -j2 BUILD=build build/rainbow
RAINBOW=$PWD/build/rainbow

cleanup() {
	kubectl -n $NS get all,events > "$OUT/cluster-state.txt" 2>&1 || true
	kubectl -n $NS logs -l app=chat --all-containers --prefix --tail=200 \
		> "$OUT/chatd-logs.txt" 2>&1 || true
	[ "${KEEP_CLUSTER:-0}" = 1 ] || kind delete cluster --name "$CLUSTER" || true
}
trap cleanup EXIT

step "creating cluster (kube-proxy $MODE)"
sed "s/kubeProxyMode: .*/kubeProxyMode: $MODE/" k8s/kind-config.yaml > "$OUT/kind-config.yaml"
kind create cluster --name "$CLUSTER" --config "$OUT/kind-config.yaml" --wait 120s
KUBECONFIG_FILE=$OUT/kubeconfig
kind get kubeconfig --name "$CLUSTER" > "$KUBECONFIG_FILE"
export KUBECONFIG="$KUBECONFIG_FILE"
for img in chatd:$SHA0 chatd:$SHA1 chatd:$SHA2 chatd:$SHA3 chatload:latest rainbow:latest; do
	kind load docker-image --name "$CLUSTER" "rainbow/$img"
done

step "applying k8s/"
kubectl apply -k k8s/
kubectl -n $NS create secret generic chat-cluster \
	--from-literal=secret="$(od -An -N32 -tx1 /dev/urandom | tr -d ' \n')"

rb() {
	"$RAINBOW" --platform kubernetes --kubeconfig "$KUBECONFIG_FILE" --namespace $NS \
		-P template=k8s/pod-template.yaml --state-dir "$OUT/state" "$@"
}

step "deploy $SHA0 (first colour)"
rb deploy "$SHA0" --replicas 2 --ready-timeout 180

step "starting chatload ($CLIENTS clients, ${DURATION}s)"
sed -e "s/value: \"500\"/value: \"$CLIENTS\"/" -e "s/value: \"300\"/value: \"$DURATION\"/" \
	k8s/jobs/chatload-job.yaml | kubectl -n $NS apply -f -
kubectl -n $NS wait --for=condition=ready pod -l job-name=chatload --timeout=120s
sleep 20	# let the clients log in before the first switch

for s in $SHA1 $SHA2 $SHA3; do
	step "deploy $s"
	rb deploy "$s" --replicas 2 --ready-timeout 180 --no-wait
	rb status
	sleep 15
done
step "rollback to $SHA2"
rb rollback "$SHA2" --no-wait
rb status

step "waiting for chatload to finish"
end=$(( $(date +%s) + DURATION + 300 ))
while :; do
	ok=$(kubectl -n $NS get job chatload -o jsonpath='{.status.succeeded}')
	bad=$(kubectl -n $NS get job chatload -o jsonpath='{.status.failed}')
	[ "${ok:-0}" -ge 1 ] && break
	[ "${bad:-0}" -ge 1 ] && break
	[ "$(date +%s)" -gt "$end" ] && { echo "kind-e2e: chatload did not finish" >&2; exit 1; }
	sleep 5
done
kubectl -n $NS logs job/chatload > "$OUT/chatload.log"
tail -n 60 "$OUT/chatload.log"

step "pruning drained colours"
rb prune --settle 5s || true
rb status

if [ "${ok:-0}" -ge 1 ]; then
	step "PASS ($MODE): chatload reports 0 dropped connections and 0 lost messages"
	exit 0
fi
step "FAIL ($MODE): chatload's expectations failed (see $OUT/chatload.log)"
exit 1
