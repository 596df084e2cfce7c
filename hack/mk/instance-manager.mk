# redis-instance-manager (the in-pod sidecar). Its tests run under `cargo test` (real
# redis-server processes, network namespaces as root), so nothing is added to TEST_TARGETS.

.PHONY: bench-instance-manager
bench-instance-manager: ## Sidecar vs prometheus-redis-exporter: RSS, scrape latency, CPU per scrape
	hack/bench-instance-manager.sh

.PHONY: bench-memory
bench-memory: ## maxmemory from the memory limit vs 90% of it: a full sync under writes in memory cgroups (needs root; docs/bench-memory.md)
	hack/bench-memory.sh
