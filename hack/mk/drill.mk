# The multi-region DR drills on a real Kubernetes (docs/real-cluster.md): the control plane built
# from Go modules (make controlplane), the node agents playing the kubelet, the operator installed
# with its Helm chart, real redis-server, redis-sentinel and Prometheus.
TEST_TARGETS += test-drill

# Everything the cluster runs (release builds for the benches): the drill, the node agent, and the
# operator image's binaries. Debug builds use CARGO_ALL (Makefile).
DRILL_CRATES = -p redis-e2e -p redis-instance-manager -p redis-operator -p redis-node-agent -p kcluster

# One local cluster at a time on a machine (fixed namespace names and ports): drills wait for
# each other. -o: the cluster's daemons must not inherit the lock.
CLUSTER_LOCK = flock -o /tmp/kcluster.lock

.PHONY: drill-build
drill-build: controlplane
	$(CARGO) build $(CARGO_ALL)

.PHONY: test-drill
test-drill: drill-build ## Run the DR drills on the local real cluster, non-interactively (needs root)
	@mkdir -p target
	$(CLUSTER_LOCK) target/debug/redis-drill --dir .drill 2>&1 | tee target/test-drill.log
	$(CLUSTER_LOCK) target/debug/redis-drill --source-failover --dir .drill-source 2>&1 | tee target/test-drill-source.log
	$(CLUSTER_LOCK) target/debug/redis-drill --cluster-faults --dir .drill-faults 2>&1 | tee target/test-drill-faults.log

.PHONY: demo-run
demo-run: drill-build
	$(CLUSTER_LOCK) target/debug/redis-drill --narrate --dir .drill
	$(CLUSTER_LOCK) target/debug/redis-drill --narrate --source-failover --dir .drill-source

.PHONY: bench
bench: deps controlplane ## The drill's timings vs plain redis-server/redis-cli, on the local real cluster (needs root; see docs/bench-drill.md)
	$(CARGO) build --release $(DRILL_CRATES)
	$(CLUSTER_LOCK) target/release/redis-drill --bench --dir .drill-bench

# The cluster counts of `make bench-scale` (comma-separated).
SCALE ?= 10,100
# ... and of `make bench-reconcile`.
RECONCILE ?= 10,50,100

.PHONY: bench-scale
bench-scale: deps controlplane ## The operator at scale: N clusters of 3 pods at once (SCALE=10,100), on the local real cluster (needs root; see docs/bench-scale.md)
	$(CARGO) build --release $(DRILL_CRATES)
	$(CLUSTER_LOCK) target/release/redis-drill --bench-scale $(SCALE) --dir .drill-bench-scale

.PHONY: bench-reconcile
bench-reconcile: deps ## The reconcile's own cost: N clusters of 3 pods on the in-memory API (RECONCILE=10,50,100; no root, no cluster; see docs/bench-scale.md)
	$(CARGO) build --release -p redis-e2e
	target/release/redis-drill --bench-reconcile $(RECONCILE)

.PHONY: bench-failover
bench-failover: deps controlplane ## Failover time, sentinel and standalone mode vs raw Sentinel, on the local real cluster (needs root; see docs/bench-failover.md)
	$(CARGO) build --release $(DRILL_CRATES)
	$(CLUSTER_LOCK) target/release/redis-drill --bench-failover --dir .drill-bench-failover

.PHONY: bench-switchover
bench-switchover: deps controlplane ## Planned switchover: write pause and duration, the operator's two steps vs the raw Redis steps by hand, on the local real cluster (needs root; see docs/switchover.md)
	$(CARGO) build --release $(DRILL_CRATES) -p kubectl-redis
	$(CLUSTER_LOCK) target/release/redis-drill --bench-switchover --dir .drill-bench-switchover
