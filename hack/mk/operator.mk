# Offline checks of the manifests the operator generates for the spec samples.
TEST_TARGETS += test-manifests

.PHONY: test-manifests
test-manifests: ## Validate generated objects (kubernetes-validate) and scan them (checkov)
	hack/test-manifests.sh
