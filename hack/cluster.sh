#!/usr/bin/env bash
# Local Kubernetes control plane for tests: etcd, kube-apiserver,
# kube-controller-manager, kube-scheduler and kwok-controller as plain
# processes (kwokctl's binary runtime), no Docker, no kubelet, loopback only.
# Pods are simulated by kwok on a few fake nodes; see docs/local-cluster.md.
#
# Usage: hack/cluster.sh up|down|status|stop-apiserver|start-apiserver
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=lib.sh
source "$root/hack/lib.sh"
bin="$root/.local/bin"
# CLUSTER_NAME and CLUSTER_KUBECONFIG run a second, independent cluster
# beside the default one (e.g. for work that must not share its CRD);
# CLUSTER_WORKDIR optionally keeps its state elsewhere than .local/kwok (a
# throwaway cluster under target/, tests/fault_apiserver.rs).
# A name without its own kubeconfig would overwrite (and `down` delete) the
# shared cluster's.
if [ -n "${CLUSTER_NAME:-}" ] && [ -z "${CLUSTER_KUBECONFIG:-}" ]; then
  echo "cluster: CLUSTER_NAME needs CLUSTER_KUBECONFIG too" >&2
  exit 2
fi
name=${CLUSTER_NAME:-model-operator}
kubeconfig=${CLUSTER_KUBECONFIG:-$root/.local/kubeconfig}
kwok_dir="$root/hack/kwok"
# kwokctl keeps each cluster (pki, etcd data, logs, pids) under this folder.
export KWOK_WORKDIR=${CLUSTER_WORKDIR:-$root/.local/kwok}
cluster_dir="$KWOK_WORKDIR/clusters/$name"
# kwokctl has no flag for kubectl; without this `kwokctl kubectl` would try
# to download one.
export KWOK_KUBECTL_BINARY="$bin/kubectl"

log() { echo "cluster: $*" >&2; }
kwokctl() { "$bin/kwokctl" --name "$name" "$@"; }
kubectl() { "$bin/kubectl" --kubeconfig "$kubeconfig" "$@"; }

# True when the apiserver behind our kubeconfig answers its readiness check.
answers() {
  [ -s "$kubeconfig" ] && [ -x "$bin/kubectl" ] &&
    kubectl get --raw /readyz --request-timeout=3s >/dev/null 2>&1
}

# Retries "$@" once a second for up to $1 seconds; the apiserver and the
# controllers come up in stages, so single checks would be racy.
wait_for() {
  local timeout=$1 what=$2
  shift 2
  local deadline=$((SECONDS + timeout))
  until "$@" >/dev/null 2>&1; do
    if [ "$SECONDS" -ge "$deadline" ]; then
      log "timed out after ${timeout}s waiting for $what"
      return 1
    fi
    sleep 1
  done
}

# Names of our simulated nodes, from hack/kwok/nodes.yaml.
node_names() { sed -n 's/^  name: //p' "$kwok_dir/nodes.yaml"; }

# True when every node of ours exists and is Ready (cordoned counts as Ready:
# a test may cordon a node).
nodes_ready() {
  local n
  for n in $(node_names); do
    [ "$(kubectl get node "$n" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null)" = True ] ||
      return 1
  done
}

# (Re)creates whichever of our nodes is missing, e.g. deleted by a test;
# existing nodes are left exactly as they are.
ensure_nodes() {
  local names
  mapfile -t names < <(node_names)
  if ! kubectl get nodes "${names[@]}" >/dev/null 2>&1; then
    kubectl create -f "$kwok_dir/nodes.yaml" 2>&1 | grep -v AlreadyExists >&2 || true
  fi
  wait_for 60 "nodes to become Ready" nodes_ready
}

# "component pid" for each process kwokctl started.
cluster_pids() {
  local f
  for f in "$cluster_dir"/pids/*.pid; do
    # kwokctl writes its pid files without a trailing newline.
    if [ -s "$f" ]; then echo "$(basename "$f" .pid) $(<"$f")"; fi
  done
}

# kill -0 alone would count a killed process that init has not reaped yet.
alive() {
  local state
  state=$(ps -o stat= -p "$1" 2>/dev/null) && [[ $state != Z* ]]
}

# True when every component is still running; a dead controller-manager or
# kwok-controller leaves an apiserver that answers but a useless cluster.
all_running() {
  local component pid n=0
  while read -r component pid; do
    alive "$pid" || { log "$component (pid $pid) is not running"; return 1; }
    n=$((n + 1))
  done < <(cluster_pids)
  [ "$n" -gt 0 ]
}

usage_hint() {
  cat <<EOF
cluster: $name is up ($(kubectl config view --minify -o jsonpath='{.clusters[0].cluster.server}'))
  export KUBECONFIG=$kubeconfig
  export PATH=$bin:\$PATH
  kubectl get nodes
EOF
}

# The front proxy's CA and client certificate: kube-apiserver proxies
# requests for aggregated APIs (the metrics APIs of hack/metrics-api.sh) with
# this certificate and the caller's identity in X-Remote-* headers, and
# publishes the CA in kube-system/extension-apiserver-authentication so the
# aggregated server can tell those headers come from the apiserver. (kwokctl
# has the apiserver present its admin certificate instead, and sets no
# requestheader CA: a backend would then see every caller as the admin.)
front_proxy="$cluster_dir/front-proxy"
front_proxy_args=(
  --extra-args "kube-apiserver=requestheader-client-ca-file=$front_proxy/front-proxy-ca.crt"
  --extra-args kube-apiserver=requestheader-allowed-names=front-proxy-client
  --extra-args kube-apiserver=requestheader-username-headers=X-Remote-User
  --extra-args kube-apiserver=requestheader-group-headers=X-Remote-Group
  --extra-args kube-apiserver=requestheader-extra-headers-prefix=X-Remote-Extra-
  --extra-args "kube-apiserver=proxy-client-cert-file=$front_proxy/front-proxy-client.crt"
  --extra-args "kube-apiserver=proxy-client-key-file=$front_proxy/front-proxy-client.key"
)

make_front_proxy_certs() {
  new_ca "$front_proxy" front-proxy-ca
  new_cert "$front_proxy" front-proxy-client "$front_proxy/front-proxy-ca.crt" \
    "$front_proxy/front-proxy-ca.key" /CN=front-proxy-client clientAuth
}

# True when the running apiserver has the front proxy set up; a cluster
# made before hack/cluster.sh did that has not.
has_front_proxy() {
  local pid
  pid=$(cat "$cluster_dir/pids/kube-apiserver.pid" 2>/dev/null) &&
    tr '\0' '\n' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- '^--requestheader-client-ca-file='
}

up() {
  "$root/hack/build-tools.sh"
  if answers && all_running && has_front_proxy; then
    log "already running"
    ensure_nodes
    usage_hint
    return 0
  fi
  if answers && all_running; then
    log "$name was made without the aggregation layer's front proxy; recreating it"
  fi
  if [ -d "$cluster_dir" ]; then
    # Left over from a crash or reboot: its processes are gone or unhealthy,
    # and a fresh cluster is quicker and more predictable than repairing one.
    log "removing stale cluster state"
    down
  fi

  local configs=(--config "$kwok_dir/kwokctl.yaml") f
  # Supplying any Stage replaces all of kwokctl's defaults, hence the full set.
  for f in "$kwok_dir"/stages/*.yaml; do configs+=(--config "$f"); done

  local start=$SECONDS
  mkdir -p "$(dirname "$kubeconfig")"
  make_front_proxy_certs
  # warn keeps kwok-controller from logging every pod patch; set
  # CLUSTER_LOG_LEVEL=info (or debug) to see what the stages do.
  kwokctl -v "${CLUSTER_LOG_LEVEL:-warn}" create cluster "${configs[@]}" \
    --runtime binary \
    --kubeconfig "$kubeconfig" \
    --kube-apiserver-binary "$bin/kube-apiserver" \
    --kube-controller-manager-binary "$bin/kube-controller-manager" \
    --kube-scheduler-binary "$bin/kube-scheduler" \
    --kwok-controller-binary "$bin/kwok" \
    --etcd-binary "$bin/etcd" \
    --extra-args kube-apiserver=advertise-address=127.0.0.1 \
    --extra-args kube-apiserver=endpoint-reconciler-type=none \
    --extra-args kube-apiserver=service-cluster-ip-range=10.0.0.0/16 \
    --extra-args etcd=unsafe-no-fsync=true \
    "${front_proxy_args[@]}" \
    --quiet-pull
  # The apiserver otherwise advertises the address of the default route,
  # which this machine may not have. It cannot publish a loopback address as
  # the `kubernetes` Service's endpoint (validation forbids it, every 10s),
  # and nothing in this cluster runs in a pod to use it anyway. The default
  # Service range (/24) holds 254 Services, too few for 1,000 models. etcd's
  # fsyncs only slow a throwaway cluster down. kube-controller-manager's
  # flags are in hack/kwok/kwokctl.yaml.

  # Generous: on a busy 2-core machine a restarted apiserver takes over a
  # minute to replay etcd and become ready; its speed is not under test.
  wait_for 180 "kube-apiserver /readyz" kubectl get --raw /readyz
  ensure_nodes
  # Pods cannot be created before the controller-manager has made the
  # namespace's default ServiceAccount.
  wait_for 60 "the default ServiceAccount" kubectl -n default get serviceaccount default
  log "created in $((SECONDS - start))s"
  usage_hint
}


down() {
  # The metrics APIs' adapter serves this cluster only.
  "$root/hack/metrics-api.sh" down
  if [ -d "$cluster_dir" ] && [ -x "$bin/kwokctl" ]; then
    local pids pid
    pids=$(cluster_pids | cut -d' ' -f2)
    kwokctl -v warn delete cluster --kubeconfig "$kubeconfig"
    # kwokctl sends SIGKILL without waiting (the processes are not its
    # children); an immediate `up` must not race them for their ports.
    for pid in $pids; do
      wait_for 10 "process $pid to exit" eval "! alive $pid" || true
    done
  fi
  # kwokctl delete may leave an emptied kubeconfig or parts of the workdir.
  rm -rf "$cluster_dir" "$kubeconfig"
  log "down"
}

status() {
  if ! [ -d "$cluster_dir" ]; then
    echo "cluster: $name does not exist"
    return 1
  fi
  if ! answers || ! all_running; then
    echo "cluster: $name is broken (try: make cluster-up, which recreates it)"
    return 1
  fi
  usage_hint
  kubectl get nodes
  echo "components:"
  local component pid
  while read -r component pid; do
    ss -Hltnp | grep "pid=$pid," | awk -v c="$component" '{print "  " c "\t" $4}' || true
  done < <(cluster_pids)
}

# Fault injection, for throwaway clusters only (never the shared one, which
# other people's tests use): stop-apiserver kills kube-apiserver; the
# command lines of all components are kept first, because the
# controller-manager and scheduler exit on their own once they cannot renew
# their leases. start-apiserver starts every component that is no longer
# running again, with the command line kwokctl gave it. (`kwokctl start
# cluster` does not: it takes the unreaped pid of the killed apiserver for a
# live one.)
stop_apiserver() {
  local component pid
  mkdir -p "$cluster_dir/cmdlines"
  while read -r component pid; do
    alive "$pid" && cp "/proc/$pid/cmdline" "$cluster_dir/cmdlines/$component"
  done < <(cluster_pids)
  pid=$(<"$cluster_dir/pids/kube-apiserver.pid")
  kill -9 "$pid"
  wait_for 10 "kube-apiserver (pid $pid) to exit" eval "! alive $pid"
  log "kube-apiserver stopped"
}

start_apiserver() {
  local component pid f args
  while read -r component pid; do
    alive "$pid" && continue
    f="$cluster_dir/cmdlines/$component"
    [ -s "$f" ] || { log "no command line kept for $component"; return 1; }
    mapfile -d '' args <"$f"
    setsid "${args[@]}" >>"$cluster_dir/logs/$component.log" 2>&1 </dev/null &
    printf '%s' "$!" >"$cluster_dir/pids/$component.pid"
    log "$component started again (pid $!)"
  done < <(cluster_pids)
  # Generous: on a busy 2-core machine a restarted apiserver takes over a
  # minute to replay etcd and become ready; its speed is not under test.
  wait_for 180 "kube-apiserver /readyz" kubectl get --raw /readyz
}

case "${1:-}" in
  stop-apiserver | start-apiserver)
    if [ -z "${CLUSTER_NAME:-}" ]; then
      echo "cluster: $1 is only for a throwaway cluster (set CLUSTER_NAME and CLUSTER_KUBECONFIG)" >&2
      exit 2
    fi
    "${1/-/_}"
    ;;
  *) dispatch "$@" ;;
esac
