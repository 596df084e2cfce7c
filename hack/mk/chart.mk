# Helm chart and Prometheus rules: offline checks (helm lint/template, kubernetes-validate,
# check-jsonschema, checkov, promtool, yamllint). See hack/test-chart.sh.
TEST_TARGETS += test-chart

.PHONY: test-chart
test-chart: ## Offline checks of the Helm chart and the Prometheus rules
	hack/test-chart.sh
