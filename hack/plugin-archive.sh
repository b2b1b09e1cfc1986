#!/usr/bin/env bash
# Packs a built kubectl-model for krew and the GitHub release: an archive
# with the binary at its root, and its sha256.
#
#   hack/plugin-archive.sh BINARY OS ARCH VERSION OUTDIR
#
# writes OUTDIR/kubectl-model_VERSION_OS_ARCH.tar.gz and .tar.gz.sha256 (the
# digest alone, as hack/krew-manifest.sh reads it). The release workflow
# runs it on Linux and macOS runners; tests/krew_manifest.rs runs it too.
set -euo pipefail
if [ "$#" -ne 5 ]; then
  echo "usage: $0 BINARY OS ARCH VERSION OUTDIR" >&2
  exit 2
fi
binary=$1 os=$2 arch=$3 version=$4 out=$5
case "$os/$arch" in
  linux/amd64 | linux/arm64 | darwin/amd64 | darwin/arm64) ;;
  *) echo "plugin-archive: unsupported platform $os/$arch" >&2; exit 2 ;;
esac
[ -x "$binary" ] || { echo "plugin-archive: $binary is not an executable" >&2; exit 1; }

mkdir -p "$out"
archive="$out/kubectl-model_${version}_${os}_${arch}.tar.gz"
stage=$(mktemp -d)
# shellcheck disable=SC2064
trap "rm -rf '$stage'" EXIT
cp "$binary" "$stage/kubectl-model"
chmod 0755 "$stage/kubectl-model"
tar -C "$stage" -czf "$archive" kubectl-model
# sha256sum on Linux, shasum on macOS.
if command -v sha256sum >/dev/null; then
  sum=$(sha256sum "$archive" | cut -d' ' -f1)
else
  sum=$(shasum -a 256 "$archive" | cut -d' ' -f1)
fi
echo "$sum" >"$archive.sha256"
echo "plugin-archive: $archive ($sum)"
