#!/usr/bin/env bash
# The operator's own identity for the end-to-end tests. Installs the Helm
# chart's ServiceAccount and RBAC, cluster-wide, and its
# ValidatingAdmissionPolicy (the operator's account writes only what it
# manages: every e2e test then runs under it), as release model-operator in
# namespace model-operator-e2e (replicas=0: no operator pod; crds.install=false:
# the tests install the CRD from the code), and writes
# .local/operator-kubeconfig: the same server and CA as .local/kubeconfig,
# with a token of that ServiceAccount as the user. tests/support runs every
# operator process with it, so the whole e2e suite shows the chart's RBAC is
# enough for everything the operator does.
#
# Usage: hack/operator-identity.sh   (make test runs it)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bin="$root/.local/bin"
admin="$root/.local/kubeconfig"
out="$root/.local/operator-kubeconfig"
release=model-operator  # tests/support/identity.rs: E2E_RELEASE
namespace=model-operator-e2e  # and E2E_NAMESPACE
values=(--set replicas=0 --set crds.install=false)

log() { echo "operator-identity: $*" >&2; }
helm() { "$bin/helm" --kubeconfig "$admin" "$@"; }
kubectl() { "$bin/kubectl" --kubeconfig "$admin" "$@"; }

# Several engineers' `make test` share the cluster: when the release already
# holds exactly this manifest there is nothing to do, and no second upgrade
# runs into the first one's release lock.
wanted=$(helm template "$release" "$root/charts/model-operator" -n "$namespace" "${values[@]}")
current=$(helm get manifest "$release" -n "$namespace" 2>/dev/null || true)
if [ "$wanted" != "$current" ]; then
  attempt=1
  until helm upgrade --install "$release" "$root/charts/model-operator" \
    -n "$namespace" --create-namespace --history-max 3 "${values[@]}" >/dev/null; do
    if [ "$attempt" -ge 5 ]; then
      log "helm upgrade --install failed $attempt times"
      exit 1
    fi
    attempt=$((attempt + 1))
    sleep 3
  done
  log "installed the chart's RBAC (release $release in namespace $namespace)"
fi

# The API server's authorizer learns of new bindings through a watch: wait
# until it has, or the first operators started would be refused.
user=system:serviceaccount:$namespace:$release
for _ in $(seq 100); do
  kubectl auth can-i list modeldeployments.mlops.dev --all-namespaces --as "$user" >/dev/null && break
  sleep 0.1
done

# A fresh token every run; 24 hours covers a day of `cargo test` by hand
# (tests/support ignores an older file and says so).
token=$(kubectl -n "$namespace" create token "$release" --duration 24h)
server=$(kubectl config view --raw --minify -o jsonpath='{.clusters[0].cluster.server}')
ca=$(kubectl config view --raw --minify --flatten -o jsonpath='{.clusters[0].cluster.certificate-authority-data}')
umask 077
tmp=$(mktemp "$out.XXXXXX")
cat >"$tmp" <<YAML
apiVersion: v1
kind: Config
clusters:
- name: local
  cluster:
    server: $server
    certificate-authority-data: $ca
users:
- name: $user
  user:
    token: $token
contexts:
- name: operator
  context:
    cluster: local
    user: $user
current-context: operator
YAML
mv "$tmp" "$out"
log "wrote $out ($user)"
