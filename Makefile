# The development loop. `make run` and `make test` are the two commands a
# newcomer needs; the rest are their parts.

.PHONY: run test test-unit test-argocd test-rules operator-identity lint crds bench bench-stretch bench-rollback bench-canary bench-gpu tools cluster-up cluster-down monitoring-up monitoring-down metrics-api metrics-api-down image image-once test-image

# Local cluster + CRD + samples + the operator in the foreground.
run:
	hack/run-local.sh

# Every test: unit, request-level and end-to-end on the local control plane
# with the local Prometheus and Alertmanager and the metrics APIs the HPA
# controller reads (started when not running).
# Every operator process runs as the Helm chart's ServiceAccount.
# tests/install.rs follows docs/install.md with the image in .local/image.
# hack/run-tests.sh builds every target once (as `cargo test --all-targets`)
# and runs the binaries TEST_JOBS (2) at a time.
test: cluster-up monitoring-up metrics-api test-argocd test-rules operator-identity image-once
	KUBECONFIG=$(CURDIR)/.local/kubeconfig OPERATOR_KUBECONFIG=$(CURDIR)/.local/operator-kubeconfig hack/run-tests.sh

# The Argo CD health script's fixtures (config/argocd), run by Argo CD's own
# Lua package (github.com/argoproj/argo-cd/v3/util/lua, VM.ExecuteHealthLua).
test-argocd:
	cd hack/argocd-health && go test ./...

# The chart's alert rules: promtool's syntax check and its unit tests
# (hack/monitoring/rules-test.yaml). promtool comes with Debian's prometheus
# package, which monitoring-up installs.
test-rules: monitoring-up
	promtool check rules charts/model-operator/files/prometheus-rules.yaml
	promtool test rules hack/monitoring/rules-test.yaml

# The chart's ServiceAccount and RBAC in the local cluster, and
# .local/operator-kubeconfig with its token, for the e2e tests' operators.
operator-identity: cluster-up
	hack/operator-identity.sh

# Pure logic only: no cluster needed.
test-unit:
	cargo test --lib --bins --test crd_in_sync

# The benchmark suite (benches/operator/main.rs): N=100 and N=1,000 against
# the plain-client floor (3 floor and 3 operator runs each, interleaved;
# BENCH_RUNS=n), 5 minutes of API quietness, memory, restart,
# single-object and rollback latency. Figures are printed as a table and
# written to .local/bench/operator.json, never asserted. BENCH_N=100 and
# BENCH_QUIET_SECS=30 make a quick run; BENCH_ONLY=latency,rollback a partial
# one. It runs on a cluster of its own, created and deleted by hack/bench.sh
# (BENCH_CLUSTER=shared: on the shared one).
bench: tools monitoring-up
	hack/bench.sh

# The stretch run: 10,000 ModelDeployments against the floor, once each, on
# a cluster with enough simulated nodes; convergence, quietness, memory and
# restart only. Not part of CI.
bench-stretch: tools monitoring-up
	BENCH_N=10000 BENCH_RUNS=1 BENCH_ONLY=convergence BENCH_SKIP_LAST_DELETE=1 hack/bench.sh

# Rollback latency alone, over 20 bad rollouts (BENCH_ROLLBACKS=n).
bench-rollback: tools monitoring-up
	BENCH_ONLY=rollback hack/bench.sh

# Only the canary abort latency (docs/canary.md), 20 aborts.
bench-canary: tools monitoring-up
	BENCH_ONLY=canary hack/bench.sh

# Only the GPU scenario (docs/benchmarks.md, "GPUs").
bench-gpu: tools monitoring-up
	BENCH_ONLY=gpu hack/bench.sh

# Formatting (rustfmt.toml), clippy (clippy.toml and [lints] in Cargo.toml:
# no unwrap/expect outside tests), shell scripts, the dependency graph
# (cargo-deny, deny.toml; advisories: see hack/lint-deps.sh) and workflows.
lint:
	cargo fmt --all -- --check
	cargo clippy --all-targets -- -D warnings
	hack/lint-shell.sh
	hack/lint-deps.sh
	hack/build-tools.sh actionlint >/dev/null
	.local/bin/actionlint -no-color

# The operator's OCI image, without a container runtime: .local/image/oci
# (OCI layout) and .local/image/model-operator.tar (docker load, kind load
# image-archive, ctr images import). See hack/image.sh.
image:
	hack/image.sh build

# The image when .local/image has none: a release build takes minutes, so
# make test reuses an existing one (CI builds it once, before make test).
# After a code change, `make image` brings it up to date.
image-once:
	@[ -f .local/image/model-operator.tar ] && [ -f .local/image/oci/index.json ] || hack/image.sh build

# Layout and tarball valid, user 65532, entrypoint, labels equal to the
# Dockerfile's, and `model-operator --version` run from the extracted rootfs
# under chroot (needs root).
test-image:
	hack/image.sh check

# crds/ is generated from src/api; never edit it by hand. The Helm chart
# ships the same file (tests/crd_in_sync.rs checks both).
crds:
	cargo run --quiet --bin model-operator -- crd > crds/mlops.dev_modeldeployments.yaml
	cp crds/mlops.dev_modeldeployments.yaml charts/model-operator/files/
	cargo run --quiet --bin model-operator -- notification-schema > docs/notification.schema.json
	BLESS=1 cargo test --quiet --test crd_in_sync docs_api_lists_every_limit

tools:
	hack/build-tools.sh

cluster-up:
	hack/cluster.sh up

cluster-down:
	hack/cluster.sh down

monitoring-up:
	hack/monitoring.sh up

monitoring-down:
	hack/monitoring.sh down

# The custom and external metrics APIs of the local cluster, served by
# prometheus-adapter from the local Prometheus (hack/metrics-api.sh).
metrics-api: cluster-up monitoring-up
	hack/metrics-api.sh up

metrics-api-down:
	hack/metrics-api.sh down
