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

# --- certificates (openssl) ---------------------------------------------

# Installs Debian's openssl when the machine lacks it (a bare Debian
# container does).
need_openssl() {
  command -v openssl >/dev/null && return 0
  echo "installing openssl" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends openssl >/dev/null
}

# openssl without its chatter ("-----", "self-signature ok"), which is shown
# only when it fails.
openssl_quiet() {
  local out
  out=$(openssl "$@" 2>&1) || { echo "$out" >&2; return 1; }
}

# new_ca DIR NAME: a self-signed CA (DIR/NAME.crt, DIR/NAME.key), ten years.
new_ca() {
  local dir=$1 name=$2
  need_openssl
  mkdir -p "$dir"
  openssl_quiet req -x509 -new -noenc -days 3650 -subj "/CN=$name" \
    -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 \
    -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign \
    -keyout "$dir/$name.key" -out "$dir/$name.crt"
  chmod 600 "$dir/$name.key"
}

# new_cert DIR NAME CA_CRT CA_KEY SUBJECT USAGE [SAN]: a key and a
# certificate signed by the CA, ten years; USAGE is clientAuth or
# serverAuth, SAN e.g. DNS:x.svc,IP:127.0.0.1.
new_cert() {
  local dir=$1 name=$2 ca_crt=$3 ca_key=$4 subject=$5 usage=$6 san=${7:-} ext
  need_openssl
  mkdir -p "$dir"
  ext="basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=$usage"
  [ -z "$san" ] || ext+=$'\n'"subjectAltName=$san"
  openssl_quiet req -new -noenc -subj "$subject" -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 \
    -keyout "$dir/$name.key" -out "$dir/$name.csr"
  openssl_quiet x509 -req -days 3650 -in "$dir/$name.csr" -CA "$ca_crt" -CAkey "$ca_key" \
    -set_serial "0x$(openssl rand -hex 16)" -extfile <(printf '%s\n' "$ext") \
    -out "$dir/$name.crt"
  rm -f "$dir/$name.csr"
  chmod 600 "$dir/$name.key"
}

# Stops process $1: SIGTERM, up to 10 s to exit, then SIGKILL.
stop_pid() {
  local pid=$1 _
  kill "$pid" 2>/dev/null || return 0
  for _ in $(seq 50); do
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 0.2
  done
  kill -9 "$pid" 2>/dev/null || true
}
