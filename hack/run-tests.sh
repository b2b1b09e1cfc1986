#!/usr/bin/env bash
# make test's runner. `cargo test --all-targets` runs its test binaries one
# after another, and most of their time is spent waiting on the cluster
# (pods, rollouts, Prometheus scrapes), not on the CPU. So every target is
# built once, then the binaries run TEST_JOBS at a time (default 2), the
# longest first. Each test namespaces what it creates, so two binaries do
# not see each other; the ones that change what every test shares run
# alone, before the rest:
#   - tests/fault_apiserver.rs starts a throwaway control plane of its own,
#     stops its API server and times the recovery, which a busy machine slows;
#   - the CI-sized benchmark pass counts every client's API writes;
#   - tests/tenancy_cleanup.rs is a load test (500 ModelDeployments analysed
#     within its patience), which a second suite's load made miss it;
#   - tests/helm_chart.rs upgrades the shared CRD with a new field, which
#     another suite's ensure_crd would put back in the middle.
# Each binary's whole output is printed when it ends (not interleaved),
# with its time; the failures are listed again at the end.
# Arguments, if any, name the targets to run (e.g. tests/capacity.rs).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

jobs=${TEST_JOBS:-2}
logs=$root/target/test-logs
rm -rf "$logs"
mkdir -p "$logs"

start=$SECONDS
cargo test --all-targets --no-run 2>&1 | tee "$logs/build.log"
echo "tests: built after $((SECONDS - start))s"

# "  Executable tests/foo.rs (target/debug/deps/foo-0123abcd)"
mapfile -t targets < <(sed -nE 's/^ *Executable (.+) \((.+)\)$/\1|\2/p' "$logs/build.log")
if [ "$#" -gt 0 ]; then
  wanted=()
  for target in "${targets[@]}"; do
    for name in "$@"; do [ "${target%%|*}" = "$name" ] && wanted+=("$target"); done
  done
  targets=("${wanted[@]}")
fi
[ "${#targets[@]}" -gt 0 ] || { echo "tests: no test binary was built" >&2; exit 1; }

alone=(tests/fault_apiserver.rs benches/operator/main.rs tests/tenancy_cleanup.rs
  tests/helm_chart.rs)
# The slowest suites first, so the last one to finish does not start last.
slowest=(tests/refused_pods.rs tests/fault_kill.rs
  tests/capacity.rs tests/tenancy_bounds.rs tests/notifications.rs tests/alerts.rs)

contains() {
  local needle=$1; shift
  local item
  for item in "$@"; do [ "$item" = "$needle" ] && return 0; done
  return 1
}

first=() rest=() exclusive=()
for target in "${targets[@]}"; do
  name=${target%%|*}
  if contains "$name" "${alone[@]}"; then exclusive+=("$target")
  elif contains "$name" "${slowest[@]}"; then first+=("$target")
  else rest+=("$target")
  fi
done

# One binary: its output to its own log, printed whole under a lock.
run_one() {
  local target=$1 name exe log began rc
  name=${target%%|*}
  exe=${target#*|}
  log=$logs/$(printf '%s' "$name" | tr '/ ' '__').log
  began=$SECONDS
  rc=0
  "$exe" > "$log" 2>&1 || rc=$?
  {
    flock 9
    echo "     Running $name ($exe)"
    cat "$log"
    if [ "$rc" -eq 0 ]; then
      echo "tests: $name passed in $((SECONDS - began))s"
    else
      echo "tests: $name FAILED (exit $rc) in $((SECONDS - began))s"
      echo "$name" >> "$logs/failed"
    fi
  } 9> "$logs/print.lock"
}
export -f run_one
export logs

for target in "${exclusive[@]}"; do
  run_one "$target"
done
# (Nothing left when every target asked for runs alone.)
parallel=("${first[@]}" "${rest[@]}")
if [ "${#parallel[@]}" -gt 0 ]; then
  # shellcheck disable=SC2016 # $1 is the inner shell's
  printf '%s\n' "${parallel[@]}" | xargs -d '\n' -P "$jobs" -I{} bash -c 'run_one "$1"' _ {}
fi

echo "tests: ${#targets[@]} binaries done after $((SECONDS - start))s"
if [ -s "$logs/failed" ]; then
  echo "tests: failed:" >&2
  sed 's/^/  /' "$logs/failed" >&2
  exit 1
fi
