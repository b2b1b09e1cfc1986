#!/usr/bin/env bash
# The custom and external metrics APIs (custom.metrics.k8s.io v1beta1 and
# v1beta2, external.metrics.k8s.io v1beta1) of the local cluster, served by
# prometheus-adapter from the local Prometheus, so the real HPA controller of
# kube-controller-manager can scale on Pods and External metrics.
#
# The adapter runs as a plain process on 127.0.0.1 (METRICS_API_PORT, 19443
# by default). kube-apiserver reaches it through APIServices whose Service is
# of type ExternalName with externalName 127.0.0.1: the aggregator then dials
# 127.0.0.1:<APIService port> itself (no endpoints, no ClusterIP involved).
# The adapter has its own identity (a client certificate of the cluster's CA,
# user prometheus-adapter) with only the rights it needs. See
# docs/local-cluster.md.
#
# Needs the cluster (hack/cluster.sh, same CLUSTER_NAME/CLUSTER_KUBECONFIG)
# and Prometheus (hack/monitoring.sh, same PROMETHEUS_PORT) to be up.
#
# Usage: hack/metrics-api.sh up|down|status
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=lib.sh
source "$root/hack/lib.sh"
bin="$root/.local/bin"
conf_dir="$root/hack/metrics-api"
name=${CLUSTER_NAME:-model-operator}
kubeconfig=${CLUSTER_KUBECONFIG:-$root/.local/kubeconfig}
cluster_pki="${CLUSTER_WORKDIR:-$root/.local/kwok}/clusters/$name/pki"
# One adapter per cluster, all its state here (certificates, kubeconfig,
# rules, log, pid).
state="$root/.local/metrics-api/$name"
port=${METRICS_API_PORT:-19443}
prometheus_url=http://127.0.0.1:${PROMETHEUS_PORT:-19090}
apiservices=(v1beta1.custom.metrics.k8s.io v1beta2.custom.metrics.k8s.io v1beta1.external.metrics.k8s.io)
# The Service the APIServices name; the serving certificate is for its DNS
# name, which is what the aggregator verifies.
service_namespace=monitoring
service_name=prometheus-adapter

log() { echo "metrics-api: $*" >&2; }
kubectl() { "$bin/kubectl" --kubeconfig "$kubeconfig" "$@"; }

cluster_answers() {
  [ -s "$kubeconfig" ] && kubectl get --raw /readyz --request-timeout=3s >/dev/null 2>&1
}

# The pid of our adapter, if it runs: its command line names our rules file,
# which is unique per work tree and cluster.
running_pid() {
  local pid
  pid=$(cat "$state/adapter.pid" 2>/dev/null) || return 1
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null &&
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- "--config=$state/config.yaml " &&
    echo "$pid"
}

# What the running adapter was started for: the cluster (its CA), the rules
# and flags, Prometheus, the port and the binary. Any change means a restart
# with a fresh identity (a recreated cluster has a new CA).
wanted() {
  {
    cat "$cluster_pki/ca.crt" "$conf_dir"/*.yaml "$root/hack/metrics-api.sh" "$bin/.stamps/prometheus-adapter"
    echo "$prometheus_url $port"
  } | sha256sum | cut -c1-16
}

# The adapter's client identity and its kubeconfig; its serving certificate
# and the CA the APIServices trust.
make_certs() {
  rm -rf "$state/pki"
  new_cert "$state/pki" client "$cluster_pki/ca.crt" "$cluster_pki/ca.key" /CN=prometheus-adapter clientAuth
  new_ca "$state/pki" serving-ca
  new_cert "$state/pki" serving "$state/pki/serving-ca.crt" "$state/pki/serving-ca.key" \
    "/CN=$service_name.$service_namespace.svc" serverAuth \
    "DNS:$service_name.$service_namespace.svc,IP:127.0.0.1"
  local server
  server=$(kubectl config view --raw --minify -o jsonpath='{.clusters[0].cluster.server}')
  local tmp="$state/kubeconfig.tmp"
  KUBECONFIG=$tmp "$bin/kubectl" config set-cluster local --server="$server" \
    --certificate-authority="$cluster_pki/ca.crt" --embed-certs >/dev/null
  KUBECONFIG=$tmp "$bin/kubectl" config set-credentials prometheus-adapter \
    --client-certificate="$state/pki/client.crt" --client-key="$state/pki/client.key" --embed-certs >/dev/null
  KUBECONFIG=$tmp "$bin/kubectl" config set-context adapter --cluster=local --user=prometheus-adapter >/dev/null
  KUBECONFIG=$tmp "$bin/kubectl" config use-context adapter >/dev/null
  chmod 600 "$tmp"
  mv "$tmp" "$state/kubeconfig"
}

# The cluster's side: RBAC for the adapter's user, the ExternalName Service
# and the three APIServices, with our port and serving CA.
manifests() {
  local ca_bundle
  ca_bundle=$(base64 -w0 <"$state/pki/serving-ca.crt")
  sed -e "s/@PORT@/$port/g" -e "s/@CA_BUNDLE@/$ca_bundle/g" \
    -e "s/@NAMESPACE@/$service_namespace/g" -e "s/@SERVICE@/$service_name/g" \
    "$conf_dir/cluster.yaml"
}

start_adapter() {
  cp "$conf_dir/adapter-config.yaml" "$state/config.yaml"
  # Rights in the cluster first: the adapter reads the front proxy's CA
  # from kube-system as it starts.
  manifests | kubectl apply --server-side --force-conflicts -f - >/dev/null
  local args=(
    --bind-address=127.0.0.1
    --secure-port="$port"
    --tls-cert-file="$state/pki/serving.crt"
    --tls-private-key-file="$state/pki/serving.key"
    --lister-kubeconfig="$state/kubeconfig"
    --authentication-kubeconfig="$state/kubeconfig"
    --authorization-kubeconfig="$state/kubeconfig"
    --prometheus-url="$prometheus_url"
    --config="$state/config.yaml"
    # Series that appeared since the last relist are unknown to the
    # adapter: tests' series must be found within seconds, not 10 minutes.
    --metrics-relist-interval=5s
    --metrics-max-age=10m
    # kube-apiserver in front already applies (or, here, does not apply)
    # priority and fairness; the adapter's own would need rights to watch
    # flow schemas.
    --enable-priority-and-fairness=false
    # Who asked for which metric (hack/metrics-api/audit-policy.yaml).
    --audit-policy-file="$conf_dir/audit-policy.yaml"
    --audit-log-path="$state/audit.log"
    --audit-log-maxsize=10
    --audit-log-maxbackup=1
  )
  # setsid: the adapter must outlive the shell (and make) that started it;
  # see hack/monitoring.sh for why the pid is looked up afterwards.
  setsid nohup "$bin/prometheus-adapter" "${args[@]}" >"$state/adapter.log" 2>&1 </dev/null &
  local pid="" tries=0
  while [ -z "$pid" ] && [ "$tries" -lt 50 ]; do
    pid=$(pgrep -n -f -- "^$bin/prometheus-adapter .*--config=$state/config.yaml " || true)
    if [ -z "$pid" ]; then sleep 0.1; tries=$((tries + 1)); fi
  done
  echo "${pid:-$!}" >"$state/adapter.pid"
}

stop_adapter() {
  local pid
  if pid=$(running_pid); then
    stop_pid "$pid"
  fi
  rm -f "$state/adapter.pid"
}

# The adapter's own readiness (anonymous requests may read /readyz), then
# the aggregator's: an APIService still Available from an adapter just
# stopped must not count.
adapter_ready() {
  curl -fsS --max-time 2 --cacert "$state/pki/serving-ca.crt" "https://127.0.0.1:$port/readyz" >/dev/null 2>&1
}

available() {
  local a
  adapter_ready || return 1
  for a in "${apiservices[@]}"; do
    [ "$(kubectl get apiservice "$a" -o jsonpath='{.status.conditions[?(@.type=="Available")].status}' 2>/dev/null)" = True ] ||
      return 1
  done
}

wait_available() {
  local deadline=$((SECONDS + 60))
  until available; do
    if ! running_pid >/dev/null; then
      log "prometheus-adapter exited; last lines of $state/adapter.log:"
      tail -n 20 "$state/adapter.log" >&2
      return 1
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
      log "timed out waiting for the APIServices to become Available:"
      kubectl get apiservice "${apiservices[@]}" >&2 || true
      tail -n 20 "$state/adapter.log" >&2
      return 1
    fi
    sleep 0.5
  done
}

usage_hint() {
  cat <<EOF
metrics-api: up (prometheus-adapter on https://127.0.0.1:$port, from $prometheus_url)
  kubectl get --raw /apis/custom.metrics.k8s.io/v1beta2
  kubectl get --raw "/apis/custom.metrics.k8s.io/v1beta2/namespaces/NS/pods/*/METRIC"
  kubectl get --raw /apis/external.metrics.k8s.io/v1beta1/namespaces/NS/METRIC
EOF
}

up() {
  local start=$SECONDS
  cluster_answers || { log "the cluster $name does not answer (make cluster-up)"; return 1; }
  curl -fsS --max-time 2 "$prometheus_url/-/ready" >/dev/null 2>&1 ||
    { log "Prometheus does not answer at $prometheus_url (make monitoring-up)"; return 1; }
  [ -s "$cluster_pki/ca.key" ] || { log "no cluster CA at $cluster_pki"; return 1; }
  "$root/hack/build-tools.sh" prometheus-adapter >/dev/null
  mkdir -p "$state"
  if running_pid >/dev/null && [ "$(cat "$state/wanted" 2>/dev/null)" = "$(wanted)" ]; then
    # The APIServices may have been deleted by hand; applying is a no-op
    # when they are as they should be.
    manifests | kubectl apply --server-side --force-conflicts -f - >/dev/null
    wait_available
    log "already running"
    usage_hint
    return 0
  fi
  stop_adapter
  make_certs
  start_adapter
  wanted >"$state/wanted"
  wait_available
  # Ready could also mean someone else's adapter on our port (with our
  # certificate: a stale process of this work tree).
  running_pid >/dev/null || { log "prometheus-adapter exited:"; tail -n 5 "$state/adapter.log" >&2; return 1; }
  log "started in $((SECONDS - start))s"
  usage_hint
}

down() {
  # Nothing to do (hack/cluster.sh down calls this for every cluster).
  [ -d "$state" ] || return 0
  # The APIServices go first: registered but unanswered, they would fail
  # every client's discovery (kubectl, helm) and the namespace controller's.
  if cluster_answers; then
    kubectl delete apiservice "${apiservices[@]}" --ignore-not-found >/dev/null || true
  fi
  stop_adapter
  rm -rf "$state"
  log "down"
}

status() {
  local pid
  if pid=$(running_pid) && available; then
    echo "metrics-api: prometheus-adapter (pid $pid) on https://127.0.0.1:$port, APIServices Available"
    kubectl get apiservice "${apiservices[@]}"
  else
    echo "metrics-api: not running (make metrics-api)"
    return 1
  fi
}

dispatch "$@"
