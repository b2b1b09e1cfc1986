# shellcheck shell=bash
# Shared by the hack/*.sh service scripts; source it, don't run it.

# Runs the up, down or status function the calling script defines.
dispatch() {
  case "${1:-}" in
    up | down | status) "$1" ;;
    *)
      echo "usage: $0 up|down|status" >&2
      exit 2
      ;;
  esac
}
