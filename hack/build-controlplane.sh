#!/usr/bin/env bash
# Builds the real Kubernetes control plane the e2e tests run on (kube-apiserver,
# kube-controller-manager, kube-scheduler, kube-proxy, etcd and kubectl as one multi-call binary,
# `kcp`, and CoreDNS as `coredns`) from
# the Go module in e2e/controlplane, once per machine: the result is cached under
# .tools/controlplane/<key>/ where <key> is the Kubernetes and etcd versions plus a hash of the
# module's files, so a second run (or a run after an unrelated change) does not rebuild.
# Prints the bin directory on stdout. Needs Go (see README.md, "Go").
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
src="$root/e2e/controlplane"
k8s_version=$(awk '$1 == "k8s.io/kubernetes" {print $2; exit}' "$src/go.mod")
etcd_version=$(awk '$1 == "go.etcd.io/etcd/server/v3" {print $2; exit}' "$src/go.mod")
hash=$(cat "$src/go.mod" "$src/go.sum" "$src"/*.go "$src"/coredns/*.go "$0" | sha256sum | cut -c1-12)
key="k8s-${k8s_version}-etcd-${etcd_version}-${hash}"
out="$root/.tools/controlplane/$key"

if [ -x "$out/bin/kcp" ]; then
  echo "$out/bin"
  exit 0
fi

if ! command -v go >/dev/null 2>&1; then
  echo "build-controlplane: Go is needed to build the control plane (kube-apiserver, etcd, ...)" >&2
  echo "  and is not on PATH. Install Go >= 1.26 (https://go.dev/dl/) and run 'make controlplane'." >&2
  exit 1
fi

echo ">> building the control plane ($key); first time on this machine: several minutes" >&2
mkdir -p "$out.tmp/bin"
# A build cache of our own, removed once the binaries are in place: building Kubernetes fills about
# 4 GB of it, which a machine that builds the control plane once never reads again, and CI's disk
# also has to hold the Rust build. A failed build keeps it, so the retry resumes.
# CONTROLPLANE_KEEP_GOCACHE=1 keeps it (for work on e2e/controlplane itself).
export GOCACHE="$root/.tools/controlplane/go-build-cache"
major=${k8s_version#v}; major=${major%%.*}
minor=${k8s_version#v*.}; minor=${minor%%.*}
ldflags="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  ldflags+=" -X $pkg.gitVersion=$k8s_version -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor"
  ldflags+=" -X $pkg.gitTreeState=clean"
done
# CGO off, as upstream builds them (static binaries, no libc dependency).
(cd "$src" && CGO_ENABLED=0 GOFLAGS=-mod=mod go build -trimpath -ldflags "$ldflags" -o "$out.tmp/bin/kcp" .) >&2
(cd "$src" && CGO_ENABLED=0 GOFLAGS=-mod=mod go build -trimpath -ldflags "-s -w" -o "$out.tmp/bin/coredns" ./coredns) >&2
for c in kube-apiserver kube-controller-manager kube-scheduler kube-proxy etcd kubectl; do
  ln -sf kcp "$out.tmp/bin/$c"
done
rm -rf "$out"
mv "$out.tmp" "$out"
if [ "${CONTROLPLANE_KEEP_GOCACHE:-0}" != 1 ]; then
  rm -rf "$GOCACHE"
fi
# Older keys are left for other checkouts of other versions; `make clean-tools` removes them all.
echo "$out/bin"
