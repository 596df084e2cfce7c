# The real Kubernetes the e2e tests run on: kube-apiserver, kube-controller-manager,
# kube-scheduler, kube-proxy, etcd, kubectl and CoreDNS built from their Go modules
# (e2e/controlplane), cached under .tools/controlplane/<versions>; redis-node-agent plays the
# kubelet. See docs/real-cluster.md.

.PHONY: controlplane
controlplane: ## Build the Kubernetes control plane from Go modules (once per machine; needs Go)
	@hack/build-controlplane.sh >/dev/null

.PHONY: cluster-up
cluster-up: deps controlplane ## Start the local multi-region cluster with the operator installed; leaves it running (needs root)
	$(CARGO) build $(CARGO_ALL)
	target/debug/kcluster up --dir .kcluster --install-operator

.PHONY: cluster-down
cluster-down: ## Stop the local cluster and remove its processes, namespaces and mounts
	@if [ -x target/debug/kcluster ]; then target/debug/kcluster down --dir .kcluster; \
	else echo "nothing to stop (target/debug/kcluster not built)"; fi
