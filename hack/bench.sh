#!/usr/bin/env bash
# `make bench`: the benchmark suite on a cluster of its own (created here,
# deleted on exit even on failure), so 1,000 models neither crowd the shared
# cluster's other users nor are disturbed by their tests. BENCH_CLUSTER=shared
# runs it on the shared cluster instead (.local/kubeconfig; its Service range
# must hold N Services: clusters created before hack/cluster.sh widened it
# to /16 hold 254).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

if [ "${BENCH_CLUSTER:-own}" = shared ]; then
  hack/cluster.sh up
  exec env KUBECONFIG="$root/.local/kubeconfig" cargo bench --bench operator
fi

export CLUSTER_NAME=model-operator-bench
export CLUSTER_WORKDIR="$root/target/bench-cluster/kwok"
export CLUSTER_KUBECONFIG="$root/target/bench-cluster/kubeconfig"
trap 'hack/cluster.sh down || true; rm -rf "$root/target/bench-cluster"' EXIT
hack/cluster.sh up

# The shared nodes take 2,400 pods; a larger N (the 10,000 stretch run) gets
# more simulated nodes of 600 pods each, each with a /22 of fake pod IPs.
largest=$(tr ',' '\n' <<<"${BENCH_N:-1000}" | sort -n | tail -n 1)
extra=$(((largest - 2000 + 599) / 600))
first_node() { awk '/^apiVersion/{on=1} on && /^---/{exit} on' hack/kwok/nodes.yaml; }
if [ "$extra" -gt 0 ]; then
  for ((i = 0; i < extra; i++)); do
    first_node | sed -e "s/kwok-node-0/kwok-bench-node-$i/g" \
      -e "s|10\.244\.0\.0/22|10.$((245 + i / 64)).$(((i % 64) * 4)).0/22|g"
    echo ---
  done | "$root/.local/bin/kubectl" --kubeconfig "$CLUSTER_KUBECONFIG" apply -f - >/dev/null
  echo "bench: $extra extra nodes for N=$largest" >&2
fi

KUBECONFIG="$CLUSTER_KUBECONFIG" cargo bench --bench operator
