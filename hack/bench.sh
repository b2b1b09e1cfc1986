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
KUBECONFIG="$CLUSTER_KUBECONFIG" cargo bench --bench operator
