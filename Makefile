# The development loop. `make run` and `make test` are the two commands a
# newcomer needs; the rest are their parts.

.PHONY: run test test-unit test-argocd operator-identity lint crds bench-rollback tools cluster-up cluster-down monitoring-up monitoring-down

# Local cluster + CRD + samples + the operator in the foreground.
run:
	hack/run-local.sh

# Every test: unit, request-level and end-to-end on the local control plane
# with the local Prometheus and Alertmanager (started when not running).
# Every operator process runs as the Helm chart's ServiceAccount.
test: cluster-up monitoring-up test-argocd operator-identity
	KUBECONFIG=$(CURDIR)/.local/kubeconfig OPERATOR_KUBECONFIG=$(CURDIR)/.local/operator-kubeconfig cargo test --all-targets

# The Argo CD health script, run in gopher-lua (the Lua VM Argo CD embeds)
# against the fixtures in config/argocd.
test-argocd:
	cd hack/argocd-health && go test ./...

# The chart's ServiceAccount and RBAC in the local cluster, and
# .local/operator-kubeconfig with its token, for the e2e tests' operators.
operator-identity: cluster-up
	hack/operator-identity.sh

# Pure logic only: no cluster needed.
test-unit:
	cargo test --lib --bins --test crd_in_sync

# Rollback latency over 20 bad rollouts (ROLLBACKS=n to change); figures are
# printed and written to .local/bench/rollback.json, never asserted.
bench-rollback: cluster-up
	KUBECONFIG=$(CURDIR)/.local/kubeconfig cargo bench --bench rollback_latency

lint:
	cargo fmt --all -- --check
	cargo clippy --all-targets -- -D warnings

# crds/ is generated from src/api; never edit it by hand. The Helm chart
# ships the same file (tests/crd_in_sync.rs checks both).
crds:
	cargo run --quiet --bin model-operator -- crd > crds/mlops.dev_modeldeployments.yaml
	cp crds/mlops.dev_modeldeployments.yaml charts/model-operator/files/

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
