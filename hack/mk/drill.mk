# The multi-region DR drill: real redis-server, redis-instance-manager and Prometheus in two
# network namespaces; the operator's reconcile code drives a simulated Kubernetes API.
TEST_TARGETS += test-drill

DRILL_BINS = target/debug/redis-drill target/debug/redis-instance-manager

.PHONY: drill-build
drill-build:
	$(CARGO) build -p redis-e2e -p redis-instance-manager

.PHONY: test-drill
test-drill: drill-build ## Run the DR drill non-interactively (needs root)
	@mkdir -p target
	target/debug/redis-drill --dir .drill 2>&1 | tee target/test-drill.log
	target/debug/redis-drill --source-failover --dir .drill-source 2>&1 | tee target/test-drill-source.log

.PHONY: demo-run
demo-run: drill-build
	target/debug/redis-drill --narrate --dir .drill
	target/debug/redis-drill --narrate --source-failover --dir .drill-source

.PHONY: bench
bench: deps ## The drill's timings vs plain redis-cli on the same servers (needs root; see docs/bench-drill.md)
	$(CARGO) build --release -p redis-e2e -p redis-instance-manager
	target/release/redis-drill --bench --dir .drill-bench

.PHONY: bench-failover
bench-failover: deps ## Failover time, sentinel and standalone mode vs raw Sentinel (needs root; see docs/bench-failover.md)
	$(CARGO) build --release -p redis-e2e -p redis-instance-manager
	target/release/redis-drill --bench-failover --dir .drill-bench-failover
