# `kubectl redis`, the plugin (crates/kubectl-redis, docs/kubectl-plugin.md). Its unit and golden
# tests run under `cargo test`; the main drill runs it through the real kubectl on the real cluster.
TEST_TARGETS += test-plugin

.PHONY: plugin-dist
plugin-dist: ## Release artefacts of kubectl redis: archive, checksum and Krew manifest in target/dist
	hack/plugin-dist.sh

.PHONY: test-plugin
test-plugin: ## Package the plugin as a release does and check the archive, its Krew manifest and kubectl's discovery
	hack/test-plugin-dist.sh
