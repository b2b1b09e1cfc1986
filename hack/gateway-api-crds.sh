#!/usr/bin/env bash
# Installs the Gateway API's standard-channel CRDs (HTTPRoute, Gateway, ...)
# into the local cluster, from the sigs.k8s.io/gateway-api Go module's own
# YAML (config/crd/standard), so a clean clone gets them through the Go
# module proxy like every other tool. No gateway controller: the canary
# tests only need the HTTPRoute API.
#
# Usage: hack/gateway-api-crds.sh   (KUBECONFIG or CLUSTER_KUBECONFIG, else
# .local/kubeconfig)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
version=v1.6.3
kubeconfig=${CLUSTER_KUBECONFIG:-${KUBECONFIG:-$root/.local/kubeconfig}}
kubectl=$root/.local/bin/kubectl
[ -x "$kubectl" ] || kubectl=kubectl

# `go mod download` of an explicit module@version needs no go.mod; run it
# outside the project's modules so none of them is touched.
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
dir=$(cd "$work" && GOFLAGS=-mod=mod go mod download -json "sigs.k8s.io/gateway-api@$version" |
  sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
if [ -z "$dir" ] || [ ! -d "$dir/config/crd/standard" ]; then
  echo "gateway-api-crds: could not download sigs.k8s.io/gateway-api@$version" >&2
  exit 1
fi
# Server-side apply: idempotent, and the CRDs are too large for the
# last-applied annotation of a client-side apply.
"$kubectl" --kubeconfig "$kubeconfig" apply --server-side --force-conflicts \
  -f "$dir/config/crd/standard/gateway.networking.k8s.io_httproutes.yaml" \
  -f "$dir/config/crd/standard/gateway.networking.k8s.io_gateways.yaml" \
  -f "$dir/config/crd/standard/gateway.networking.k8s.io_gatewayclasses.yaml" \
  -f "$dir/config/crd/standard/gateway.networking.k8s.io_referencegrants.yaml" >&2
"$kubectl" --kubeconfig "$kubeconfig" wait --for condition=Established --timeout=60s \
  crd/httproutes.gateway.networking.k8s.io >&2
echo "gateway-api-crds: $version standard channel installed" >&2
