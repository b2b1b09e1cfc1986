#!/usr/bin/env bash
# Checks the dependency graph against deny.toml with cargo-deny (`make lint`):
# licences, bans (duplicates, wildcards) and sources always; advisories only
# when the RustSec database can be had, because it is a git repository on
# GitHub that an offline machine cannot fetch.
#
# LINT_ADVISORIES chooses (default: auto):
#   fetch  fetch the database and check advisories (CI, which has internet)
#   auto   check advisories against a database already on disk (one an
#          earlier `fetch` left in ~/.cargo/advisory-dbs), without fetching;
#          skip them, saying so, when there is none
#   skip   do not check advisories
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

"$root/hack/build-tools.sh" cargo-deny >/dev/null
deny="$root/.local/bin/cargo-deny"

# Errors only: duplicate versions are warnings (deny.toml says why), listed
# by `.local/bin/cargo-deny check bans`.
"$deny" --log-level error --locked check licenses bans sources
echo "lint-deps: licences, bans and sources clean"

mode=${LINT_ADVISORIES:-auto}
case "$mode" in
  fetch)
    "$deny" --log-level error --locked check advisories
    echo "lint-deps: advisories clean (database fetched)"
    ;;
  auto)
    if compgen -G "${CARGO_HOME:-$HOME/.cargo}/advisory-dbs/*/.git" >/dev/null; then
      "$deny" --log-level error --frozen check advisories
      echo "lint-deps: advisories clean (database on disk, not refreshed)"
    else
      echo "lint-deps: advisories SKIPPED: no RustSec database on disk and this check does not fetch one (LINT_ADVISORIES=fetch does, with access to github.com)"
    fi
    ;;
  skip)
    echo "lint-deps: advisories SKIPPED (LINT_ADVISORIES=skip)"
    ;;
  *)
    echo "lint-deps: LINT_ADVISORIES must be fetch, auto or skip, not '$mode'" >&2
    exit 2
    ;;
esac
