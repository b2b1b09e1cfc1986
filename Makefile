# Local development infrastructure. The cluster and monitoring targets only
# wrap the scripts in hack/, which can also be run directly.

.PHONY: tools cluster-up cluster-down monitoring-up monitoring-down

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
