# The two commands a newcomer needs (see README.md):
#   make demo   the local multi-region DR drill with real Redis servers
#   make test   everything CI runs: format, lint, CRD drift, unit and real-Redis tests, chart checks
# Both install what they need first (hack/install-deps.sh; as root it installs, otherwise it says
# what is missing).

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

# Project-local tools (helm, kubectl, the PyPI validators) live in .tools/, installed by `make deps`.
export PATH := $(CURDIR)/.tools/bin:$(CURDIR)/.tools/venv/bin:$(PATH)
CARGO ?= cargo
# Every build here selects the same targets and features, so `make test` compiles each crate once
# and `cargo test` reuses what the drill built (a different feature set is a second copy of every
# dependency in target/, and CI's disk is finite).
CARGO_ALL := --workspace --all-targets --all-features
export CARGO_TERM_COLOR ?= never

# Each area adds its own test targets in hack/mk/*.mk (TEST_TARGETS += ...), so `make test` grows
# without every change touching this file.
TEST_TARGETS :=
include $(sort $(wildcard hack/mk/*.mk))

.PHONY: help
help: ## List the targets
	@grep -hE '^[a-zA-Z0-9_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

.PHONY: deps
deps: ## Install Debian packages, PyPI tools and helm (idempotent)
	@hack/install-deps.sh

.PHONY: build
build: ## Build every crate and test (debug)
	$(CARGO) build $(CARGO_ALL)

.PHONY: crd
crd: ## Regenerate the CRD YAML from the Rust types (config/crd and the Helm chart)
	$(CARGO) run -q -p redis-cluster-api --bin crdgen > config/crd/redis.io_redisclusters.yaml
	cp config/crd/redis.io_redisclusters.yaml charts/redis-operator/crds/redis.io_redisclusters.yaml

.PHONY: fmt
fmt: ## Format the code
	$(CARGO) fmt --all

.PHONY: fmt-check
fmt-check: ## Fail if the code is not formatted
	$(CARGO) fmt --all -- --check

.PHONY: clippy
clippy: ## Lint, warnings are errors
	$(CARGO) clippy --workspace --all-targets --all-features -- -D warnings

.PHONY: test-rust
test-rust: ## All Rust tests: pure, mock-API, real Redis (the CRD drift check is one of them)
	@mkdir -p target
	@# Not CARGO_ALL: --all-targets would skip the doctests. Same features, so nothing is rebuilt.
	$(CARGO) test --workspace --all-features 2>&1 | tee target/test-rust.log
	@awk '/^test result:/ {p+=$$4; f+=$$6} END {printf "cargo test: %d passed, %d failed\n", p, f}' target/test-rust.log

.PHONY: test
test: deps fmt-check clippy $(TEST_TARGETS) test-rust ## Everything CI runs
	@cat target/test-*.log | awk '/^test result:/ {p+=$$4; f+=$$6} /^drill: [0-9]+ passed/ {p+=$$2; f+=$$4} END {printf "make test: %d passed, %d failed\n", p, f}'


.PHONY: demo
demo: deps demo-run ## The local multi-region DR drill with real Redis servers, narrated (needs root)
