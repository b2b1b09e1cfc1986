# The operator image, for builders with a container runtime. `make image`
# builds the same image without one (hack/image.sh): both run
# hack/image/rootfs.sh on a static musl binary and declare the same user,
# entrypoint, environment and labels (`make test-image` compares them with
# this file). Multi-platform: docker buildx build --platform linux/amd64,linux/arm64
#   docker build --build-arg GIT_COMMIT=$(git rev-parse --short=12 HEAD) \
#     --build-arg VERSION=0.1.0 -t model-operator:0.1.0 .
# The toolchain rust-toolchain.toml pins.
FROM rust:1.95.0-bookworm AS build
# musl-gcc for ring's C code; Debian's CA bundle, as on the machines that
# run `make image`.
RUN apt-get update -qq \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends musl-tools ca-certificates \
    && rm -rf /var/lib/apt/lists/*
RUN rustup target add "$(uname -m)-unknown-linux-musl"
WORKDIR /src
COPY Cargo.toml Cargo.lock build.rs ./
# Cargo.toml declares the benchmark target, so its file must exist.
COPY benches ./benches
COPY src ./src
COPY hack/image/rootfs.sh ./hack/image/rootfs.sh
# No .git in the build context: the commit comes in as an argument.
ARG GIT_COMMIT=""
RUN MODEL_OPERATOR_GIT_COMMIT="$GIT_COMMIT" cargo build --release --locked \
        --target "$(uname -m)-unknown-linux-musl" --bin model-operator \
    && hack/image/rootfs.sh "target/$(uname -m)-unknown-linux-musl/release/model-operator" \
        /etc/ssl/certs/ca-certificates.crt /rootfs

# Nothing but the rootfs: the static binary, CA certificates, passwd/group
# naming uid/gid 65532 ("nonroot"), an empty /tmp.
FROM scratch
ARG VERSION=0.1.0
ARG GIT_COMMIT=""
ARG SOURCE=""
COPY --from=build /rootfs/ /
LABEL org.opencontainers.image.title="model-operator" \
      org.opencontainers.image.description="Kubernetes operator that serves ML models and rolls bad versions back automatically" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.revision="${GIT_COMMIT}"
ENV PATH=/
ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt
# Numeric, so runAsNonRoot can verify it without a passwd lookup.
USER 65532:65532
ENTRYPOINT ["/model-operator"]
CMD ["run"]
