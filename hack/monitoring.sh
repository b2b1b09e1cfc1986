#!/usr/bin/env bash
# Prometheus and Alertmanager for local tests, from Debian's packages but run
# as plain background processes on loopback ports with all state under
# .local/monitoring (the packages' own services would listen on 0.0.0.0).
#
# Usage: hack/monitoring.sh up|down|status
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=lib.sh
source "$root/hack/lib.sh"
conf_dir="$root/hack/monitoring"
state="$root/.local/monitoring"
# PROMETHEUS_PORT and ALERTMANAGER_PORT let a second work tree run its own
# pair beside these (the tests read the same variables).
prometheus_addr=127.0.0.1:${PROMETHEUS_PORT:-19090}
alertmanager_addr=127.0.0.1:${ALERTMANAGER_PORT:-19093}
packages=(prometheus prometheus-alertmanager curl)

log() { echo "monitoring: $*" >&2; }

# --- packages -----------------------------------------------------------

missing_packages() {
  local p
  for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || echo "$p"
  done
}

install_packages() {
  local missing
  missing=$(missing_packages)
  [ -n "$missing" ] || return 0
  log "installing: ${missing//$'\n'/ }"
  # Keep apt from starting the packaged services (on 0.0.0.0:9090/9093);
  # only add a policy when the machine has none, and remove it afterwards.
  local policy=/usr/sbin/policy-rc.d added_policy=0
  if ! [ -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy"
    chmod +x "$policy"
    added_policy=1
  fi
  # shellcheck disable=SC2086
  if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >/dev/null; }; then
    [ "$added_policy" = 0 ] || rm -f "$policy"
    log "apt-get install failed"
    return 1
  fi
  [ "$added_policy" = 0 ] || rm -f "$policy"
  disable_packaged_services
}

# We never use the packaged services; make sure they are neither running nor
# started at boot, whichever init system the machine has.
disable_packaged_services() {
  local svc
  for svc in prometheus prometheus-alertmanager; do
    if [ -d /run/systemd/system ]; then
      systemctl disable --now "$svc" >/dev/null 2>&1 || true
    else
      if command -v systemctl >/dev/null; then
        systemctl disable "$svc" >/dev/null 2>&1 || true
      fi
      # Stops only the daemon named in the package's own pid file.
      if [ -s "/run/prometheus/$svc.pid" ] && [ -x "/etc/init.d/$svc" ]; then
        "/etc/init.d/$svc" stop >/dev/null 2>&1 || true
      fi
    fi
  done
}

# --- processes -----------------------------------------------------------

addr_of() { if [ "$1" = prometheus ]; then echo "$prometheus_addr"; else echo "$alertmanager_addr"; fi; }

# The pid recorded for $1, if that process is still the one we started.
running_pid() {
  local pid
  pid=$(cat "$state/$1.pid" 2>/dev/null) || return 1
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null &&
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- "--web.listen-address=$(addr_of "$1")" &&
    echo "$pid"
}

ready() { curl -fsS --max-time 2 "http://$(addr_of "$1")/-/ready" >/dev/null 2>&1; }

start() {
  local name=$1
  shift
  if running_pid "$name" >/dev/null; then return 0; fi
  local exe=$1 pid="" tries=0
  # setsid: the daemon must outlive the shell (and make) that started it.
  setsid nohup "$@" >"$state/$name.log" 2>&1 </dev/null &
  # setsid forks when it is already a process group leader (a shell with job
  # control makes every background job one), so $! can be a parent that has
  # exited already: record the process that was exec'd with our listen
  # address instead (nohup execs the daemon, so its command line starts with
  # the daemon's name, unlike setsid's own).
  while [ -z "$pid" ] && [ "$tries" -lt 50 ]; do
    pid=$(pgrep -n -f -- "^$exe .*--web.listen-address=$(addr_of "$name")" || true)
    if [ -z "$pid" ]; then sleep 0.1; tries=$((tries + 1)); fi
  done
  echo "${pid:-$!}" >"$state/$name.pid"
}

start_prometheus() {
  start prometheus prometheus \
    --config.file="$state/prometheus.yml" \
    --storage.tsdb.path="$state/prometheus-data" \
    --web.listen-address="$prometheus_addr" \
    --web.enable-lifecycle
}

start_alertmanager() {
  # An empty cluster listen address turns off the gossip listener, which
  # would otherwise bind 0.0.0.0:9094.
  start alertmanager prometheus-alertmanager \
    --config.file="$state/alertmanager.yml" \
    --storage.path="$state/alertmanager-data" \
    --web.listen-address="$alertmanager_addr" \
    --cluster.listen-address=
}

# Copies a config into place, with the addresses in use; a running daemon is
# told to reload it.
install_config() {
  local name=$1 file=$2 rendered
  rendered=$(sed -e "s/127\.0\.0\.1:19090/$prometheus_addr/g" -e "s/127\.0\.0\.1:19093/$alertmanager_addr/g" "$conf_dir/$file")
  if [ -f "$state/$file" ] && [ "$rendered" = "$(cat "$state/$file")" ]; then return 0; fi
  printf '%s\n' "$rendered" >"$state/$file"
  if running_pid "$name" >/dev/null; then
    log "reloading $name"
    curl -fsS -X POST "http://$(addr_of "$name")/-/reload" >/dev/null || true
  fi
}

wait_ready() {
  local name=$1 deadline=$((SECONDS + 60))
  until ready "$name"; do
    if ! running_pid "$name" >/dev/null; then
      log "$name exited; last lines of $state/$name.log:"
      tail -n 20 "$state/$name.log" >&2
      return 1
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
      log "timed out waiting for $name"
      return 1
    fi
    sleep 0.5
  done
}

stop() {
  local name=$1 pid
  if pid=$(running_pid "$name"); then
    stop_pid "$pid"
  fi
  rm -f "$state/$name.pid"
}

# --- commands -----------------------------------------------------------

usage_hint() {
  cat <<EOF
monitoring: up
  Prometheus:   http://$prometheus_addr   (scrape targets: drop JSON into $state/targets/)
  Alertmanager: http://$alertmanager_addr
EOF
}

up() {
  install_packages
  # Installed earlier by someone else, the packaged services may be running.
  disable_packaged_services
  mkdir -p "$state/targets" "$state/podmonitor" "$state/rules" "$state/prometheus-data" "$state/alertmanager-data"
  install_config prometheus prometheus.yml
  install_config alertmanager alertmanager.yml
  if ready prometheus && ready alertmanager && running_pid prometheus >/dev/null && running_pid alertmanager >/dev/null; then
    log "already running"
    usage_hint
    return 0
  fi
  start_alertmanager
  start_prometheus
  wait_ready alertmanager
  wait_ready prometheus
  usage_hint
}

down() {
  stop prometheus
  stop alertmanager
  # Tests expect a clean slate: no old series, alerts or scrape targets.
  rm -rf "$state"
  log "down"
}

status() {
  local name rc=0 pid
  for name in prometheus alertmanager; do
    if pid=$(running_pid "$name") && ready "$name"; then
      echo "$name: ready at http://$(addr_of "$name") (pid $pid)"
    else
      echo "$name: not running"
      rc=1
    fi
  done
  return "$rc"
}

dispatch "$@"
