#!/usr/bin/env bash
# The newcomer's first command (`make run`): brings up the local cluster
# (building it on first use), installs the CRD, applies the samples into the
# `models` namespace and runs the operator in the foreground. Ctrl-C stops
# the operator; the cluster keeps running (`make cluster-down` stops it).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
export KUBECONFIG="$root/.local/kubeconfig"
kubectl="$root/.local/bin/kubectl"

hack/cluster.sh up
cargo build --bin model-operator
"$kubectl" apply --server-side --force-conflicts -f crds/
# On a new cluster the CRD may have no status yet, and `kubectl wait`
# fails at once on an absent conditions list instead of waiting: retry.
for attempt in $(seq 1 30); do
  if "$kubectl" wait --for=condition=Established crd/modeldeployments.mlops.dev --timeout=60s 2>/dev/null; then
    break
  fi
  [ "$attempt" -lt 30 ] || { echo "run-local: the CRD never became Established" >&2; exit 1; }
  sleep 1
done
"$kubectl" create namespace models --dry-run=client -o yaml | "$kubectl" apply -f -
"$kubectl" -n models apply -f config/samples/

cat <<MSG

The operator starts now (Ctrl-C stops it). In another terminal:

  export KUBECONFIG=$KUBECONFIG PATH=$root/.local/bin:\$PATH
  kubectl -n models get mdep -w
  kubectl -n models describe mdep fraud-detector

MSG
# /metrics in plain HTTP on 127.0.0.1:8080 (curl it without a token); the
# chart serves it over HTTPS to authorised readers only. A local run is a
# single-team cluster: analysis and alerts may go to any address (in a
# shared cluster list them per purpose). Both in docs/security.md.
exec target/debug/model-operator run --metrics-auth=none --allow-any-endpoint
