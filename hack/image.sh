#!/usr/bin/env bash
# The operator's OCI image without a container runtime (make image), and its
# check (make test-image).
#
#   hack/image.sh build   release binary for the musl target (statically
#                         linked), hack/image/rootfs.sh, then oci-image build:
#                         .local/image/oci (OCI layout) and
#                         .local/image/model-operator.tar (docker-archive)
#   hack/image.sh check   oci-image check: layout and tarball valid, config
#                         (user 65532, entrypoint, labels) equal to the
#                         Dockerfile's, `model-operator --version` run from
#                         the extracted rootfs under chroot (needs root); then
#                         skopeo copies both forms (a second, independent reader)
#
# Installs what is missing: the Rust musl target (rustup), musl-tools,
# ca-certificates and skopeo (apt-get, as root). IMAGE_SOURCE sets the
# org.opencontainers.image.source label (default: origin when it is https).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
out="$root/.local/image"
tool="$root/.local/bin/oci-image"
certs=/etc/ssl/certs/ca-certificates.crt

log() { echo "image: $*"; }

case "$(uname -m)" in
  x86_64) rust_arch=x86_64 arch=amd64 ;;
  aarch64 | arm64) rust_arch=aarch64 arch=arm64 ;;
  *) log "unsupported machine $(uname -m)"; exit 1 ;;
esac
target="$rust_arch-unknown-linux-musl"
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n1)
revision=${MODEL_OPERATOR_GIT_COMMIT:-$(git rev-parse --short=12 HEAD 2>/dev/null || true)}
source_url=${IMAGE_SOURCE-$(git remote get-url origin 2>/dev/null | grep '^https://' | sed 's/\.git$//' || true)}

prerequisites() {
  if ! rustup target list --installed | grep -qx "$target"; then
    log "rustup target add $target"
    rustup target add "$target"
  fi
  local missing=()
  command -v musl-gcc >/dev/null || missing+=(musl-tools)
  [ -s "$certs" ] || missing+=(ca-certificates)
  if [ "${#missing[@]}" -gt 0 ]; then
    log "installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
}

# Builds hack/image into .local/bin/oci-image when its sources changed.
oci_image_tool() {
  local stamp="$root/.local/bin/.stamps/oci-image" want
  want=$(cat hack/image/go.mod hack/image/go.sum hack/image/*.go | sha256sum | cut -c1-16)
  if [ -x "$tool" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
    return
  fi
  log "building oci-image (hack/image, go-containerregistry)"
  mkdir -p "$(dirname "$stamp")"
  (cd hack/image && CGO_ENABLED=0 go build -trimpath -o "$tool" .)
  echo "$want" >"$stamp"
}

build() {
  local start=$SECONDS
  prerequisites
  oci_image_tool
  log "cargo build --release --target $target (model-operator $version${revision:+, commit $revision})"
  MODEL_OPERATOR_GIT_COMMIT=$revision cargo build --release --locked --target "$target" --bin model-operator
  hack/image/rootfs.sh "target/$target/release/model-operator" "$certs" "$out/rootfs"
  "$tool" build --rootfs "$out/rootfs" --out "$out" --version "$version" \
    --revision "$revision" --source "$source_url" --arch "$arch"
  log "built in $((SECONDS - start))s"
}

check() {
  oci_image_tool
  [ -d "$out/oci" ] || { log "no image in $out: run make image first"; exit 1; }
  "$tool" check --out "$out" --dockerfile Dockerfile --version "$version" \
    --revision "$revision" --source "$source_url"
  # A second reader, not go-containerregistry: skopeo (containers/image, what
  # podman load uses) copies both forms, verifying every digest on the way.
  if ! command -v skopeo >/dev/null; then
    log "installing skopeo"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends skopeo >/dev/null
  fi
  local tmp
  tmp=$(mktemp -d)
  # shellcheck disable=SC2064
  trap "rm -rf '$tmp'" EXIT
  skopeo copy -q "docker-archive:$out/model-operator.tar" "dir:$tmp/archive"
  skopeo copy -q "oci:$out/oci:$version" "dir:$tmp/layout"
  log "skopeo read the docker-archive tarball and the OCI layout ($version)"
}

case "${1:-build}" in
  build) build ;;
  check) check ;;
  *) echo "usage: $0 build|check" >&2; exit 2 ;;
esac
