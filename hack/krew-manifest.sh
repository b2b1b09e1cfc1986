#!/usr/bin/env bash
# The krew plugin manifest of a release: config/krew/model.yaml with the
# version, the repository and every archive's sha256 filled in.
#
#   hack/krew-manifest.sh VERSION REPOSITORY DIR > model.yaml
#
# VERSION without the leading v (0.1.0), REPOSITORY as owner/name, DIR
# holding what hack/plugin-archive.sh wrote. The template's comments are
# left out. Fails when an archive the template names has no digest, or a
# placeholder is left.
set -euo pipefail
if [ "$#" -ne 3 ]; then
  echo "usage: $0 VERSION REPOSITORY DIR" >&2
  exit 2
fi
version=$1 repository=$2 dir=$3
root=$(cd "$(dirname "$0")/.." && pwd)
manifest=$(sed -e "/^#/d" -e "s|{{VERSION}}|$version|g" -e "s|{{REPOSITORY}}|$repository|g" \
  "$root/config/krew/model.yaml")
mapfile -t placeholders < <(grep -o '{{SHA256_[a-z]*_[a-z0-9]*}}' <<<"$manifest" | sort -u)
for placeholder in "${placeholders[@]}"; do
  platform=${placeholder#\{\{SHA256_}
  platform=${platform%\}\}}
  file="$dir/kubectl-model_${version}_${platform}.tar.gz.sha256"
  [ -s "$file" ] || { echo "krew-manifest: no $file" >&2; exit 1; }
  sum=$(cut -c1-64 "$file")
  manifest=${manifest//"$placeholder"/$sum}
done
if grep -q '{{' <<<"$manifest"; then
  echo "krew-manifest: placeholders left: $(grep -o '{{[^}]*}}' <<<"$manifest" | sort -u | tr '\n' ' ')" >&2
  exit 1
fi
printf '%s\n' "$manifest"
