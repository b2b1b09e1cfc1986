#!/bin/sh
# Assembles the operator image's root filesystem: the static binary, the CA
# certificates and a passwd/group naming the non-root user 65532. Both
# `make image` (hack/image.sh) and the Dockerfile's build stage run this
# script, so both images hold the same files.
#
# Usage: hack/image/rootfs.sh BINARY CA_BUNDLE OUTDIR
# POSIX sh: the Dockerfile's build stage runs it with /bin/sh.
set -eu
bin=$1 certs=$2 out=$3
rm -rf "$out"
mkdir -p "$out/etc/ssl/certs" "$out/tmp"
chmod 1777 "$out/tmp"
install -m 0755 "$bin" "$out/model-operator"
install -m 0644 "$certs" "$out/etc/ssl/certs/ca-certificates.crt"
printf '%s\n' 'root:x:0:0:root:/root:/sbin/nologin' 'nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin' >"$out/etc/passwd"
printf '%s\n' 'root:x:0:' 'nonroot:x:65532:' >"$out/etc/group"
chmod 0644 "$out/etc/passwd" "$out/etc/group"
