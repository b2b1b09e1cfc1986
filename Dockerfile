# A small static image of the operator: built against musl (statically
# linked by default), run from distroless/static as a non-root user.
# Not built by CI (no container runtime there); build it with
#   docker build -t registry.example/model-operator:0.1.0 .
FROM rust:1.89-alpine AS build
# ring and rustls need a C toolchain and the musl headers.
RUN apk add --no-cache musl-dev
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
# Cargo.toml declares the benchmark target, so its file must exist.
COPY benches ./benches
COPY src ./src
RUN cargo build --release --locked --bin model-operator

# No shell, no package manager; CA certificates (for an HTTPS Prometheus or
# webhook); uid/gid 65532 ("nonroot").
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /src/target/release/model-operator /model-operator
# Numeric, so runAsNonRoot can verify it without a passwd lookup.
USER 65532:65532
ENTRYPOINT ["/model-operator"]
CMD ["run"]
