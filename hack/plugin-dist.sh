#!/usr/bin/env bash
# The release artefacts of `kubectl redis`: target/dist/kubectl-redis_v<version>_linux_amd64.tar.gz
# (the binary and LICENSE), its .sha256, and target/dist/redis.yaml, the Krew manifest
# (config/krew/redis.yaml with the version, address and checksum filled in).
#
# Usage: hack/plugin-dist.sh [--binary <prebuilt kubectl-redis>] [--out <dir>]
# Env:   URI_BASE (default https://example.invalid/redis-operator/releases/download/v<version>)
# Without --binary it builds the release binary (cargo build --release -p kubectl-redis).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
binary="" out="$root/target/dist"
while [ $# -gt 0 ]; do
  case "$1" in
    --binary) binary=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    *) echo "plugin-dist: unknown argument $1" >&2; exit 2 ;;
  esac
done
version=$(awk -F'"' '/^version = / {print $2; exit}' "$root/Cargo.toml")
if [ -z "$binary" ]; then
  (cd "$root" && "${CARGO:-cargo}" build -q --release -p kubectl-redis)
  binary="$root/target/release/kubectl-redis"
fi
uri_base=${URI_BASE:-https://example.invalid/redis-operator/releases/download/v$version}
name="kubectl-redis_v${version}_linux_amd64.tar.gz"
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
install -m 0755 "$binary" "$stage/kubectl-redis"
install -m 0644 "$root/LICENSE" "$stage/LICENSE"
mkdir -p "$out"
# Reproducible: fixed owner, order and times.
tar --sort=name --owner=0 --group=0 --numeric-owner --mtime='2026-01-01 00:00:00Z' \
  -C "$stage" -czf "$out/$name" kubectl-redis LICENSE
sha=$(sha256sum "$out/$name" | cut -d' ' -f1)
echo "$sha  $name" > "$out/$name.sha256"
sed -e "s|@VERSION@|$version|g" -e "s|@URI_BASE@|$uri_base|g" -e "s|@SHA256_LINUX_AMD64@|$sha|g" \
  "$root/config/krew/redis.yaml" > "$out/redis.yaml"
echo "$out/$name"
echo "$out/redis.yaml"
