#!/usr/bin/env bash
# The baseline of `make bench-reconcile`: howl-cloud/redis-operator's own reconcile benchmark
# (BenchmarkReconcileLoop: N clusters of 3 pods on controller-runtime's fake client), run on this
# machine from a checkout of it. Its module is not served by the Go module proxy, so the checkout
# is the caller's:
#
#   git clone https://github.com/howl-cloud/redis-operator /tmp/howl
#   git -C /tmp/howl checkout 7fb89cf     # the commit of its docs/performance.md numbers
#   hack/bench-howl.sh /tmp/howl
#
# Prints `go test -bench` lines: ns/op is one pass over every cluster (compare with the "steady
# pass" column of `make bench-reconcile`). docs/bench-scale.md has both, measured on one machine.
set -euo pipefail
dir=${1:?usage: hack/bench-howl.sh <checkout of howl-cloud/redis-operator>}
cd "$dir"
echo "howl-cloud/redis-operator $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
GOFLAGS=-mod=mod go test -run '^$' -bench 'BenchmarkReconcileLoop' -benchmem -benchtime=3s \
  ./internal/controller/cluster
