#!/usr/bin/env bash
# Installs the CRDs of other projects the tests write objects of, from those
# projects' own Go modules (fetched through the Go module proxy like every
# other tool), so a clean clone gets them without another download path:
#
#   gateway-api  the Gateway API's standard channel (HTTPRoute, Gateway, ...),
#                sigs.k8s.io/gateway-api config/crd/standard; no gateway
#                controller: the canary tests only need the HTTPRoute API.
#   keda         KEDA's ScaledObject, github.com/kedacore/keda/v2
#                config/crd/bases; no KEDA: config/examples/keda.yaml is
#                checked against KEDA's own schema.
#
# Usage: hack/module-crds.sh gateway-api|keda   (KUBECONFIG or
# CLUSTER_KUBECONFIG, else .local/kubeconfig)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
kubeconfig=${CLUSTER_KUBECONFIG:-${KUBECONFIG:-$root/.local/kubeconfig}}
kubectl=$root/.local/bin/kubectl
[ -x "$kubectl" ] || kubectl=kubectl

case "${1:-}" in
  gateway-api)
    module=sigs.k8s.io/gateway-api@v1.6.3
    files=(config/crd/standard/gateway.networking.k8s.io_{httproutes,gateways,gatewayclasses,referencegrants}.yaml)
    established=httproutes.gateway.networking.k8s.io
    ;;
  keda)
    module=github.com/kedacore/keda/v2@v2.18.1
    files=(config/crd/bases/keda.sh_scaledobjects.yaml)
    established=scaledobjects.keda.sh
    ;;
  *)
    echo "usage: $0 gateway-api|keda" >&2
    exit 2
    ;;
esac

# `go mod download` of an explicit module@version needs no go.mod; run it
# outside the project's modules so none of them is touched.
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
dir=$(cd "$work" && GOFLAGS=-mod=mod go mod download -json "$module" |
  sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
if [ -z "$dir" ] || [ ! -f "$dir/${files[0]}" ]; then
  echo "module-crds: could not download $module" >&2
  exit 1
fi
# Server-side apply: idempotent, and the CRDs are too large for the
# last-applied annotation of a client-side apply.
args=()
for f in "${files[@]}"; do args+=(-f "$dir/$f"); done
"$kubectl" --kubeconfig "$kubeconfig" apply --server-side --force-conflicts "${args[@]}" >&2
"$kubectl" --kubeconfig "$kubeconfig" wait --for condition=Established --timeout=60s \
  "crd/$established" >&2
echo "module-crds: $1 ($module) installed" >&2
