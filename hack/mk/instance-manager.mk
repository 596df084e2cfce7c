# redis-instance-manager (the in-pod sidecar). Its tests run under `cargo test` (real
# redis-server processes, network namespaces as root), so nothing is added to TEST_TARGETS.

.PHONY: bench-instance-manager
bench-instance-manager: ## Sidecar vs prometheus-redis-exporter: RSS, scrape latency, CPU per scrape
	hack/bench-instance-manager.sh
