#!/usr/bin/env bash
# Runs ShellCheck on every shell script of the project (`make lint`), installing
# Debian's shellcheck first when the machine lacks it.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

if ! command -v shellcheck >/dev/null; then
  echo "lint-shell: installing shellcheck" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends shellcheck >/dev/null
fi
mapfile -t scripts < <(git ls-files 'hack/*.sh' 'hack/**/*.sh' .ci/run)
shellcheck -x "${scripts[@]}"
echo "lint-shell: ${#scripts[@]} scripts clean"
