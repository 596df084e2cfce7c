#!/usr/bin/env bash
# Packages the debug build of kubectl-redis exactly as `make plugin-dist` packages the release
# build, then checks what a user installing it gets: the archive holds the binary and LICENSE,
# the Krew manifest names them and carries the archive's real checksum, and kubectl discovers
# the plugin on PATH and runs it.
set -euo pipefail
cd "$(dirname "$0")/.."
${CARGO:-cargo} build -q --workspace --all-targets --all-features
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
hack/plugin-dist.sh --binary target/debug/kubectl-redis --out "$out/dist" >/dev/null
fail=0
check() { if eval "$2"; then echo "  ok: $1"; else echo "  FAIL: $1"; fail=1; fi; }
archive=$(ls "$out"/dist/kubectl-redis_v*_linux_amd64.tar.gz)
manifest="$out/dist/redis.yaml"
check "the archive holds kubectl-redis and LICENSE only" \
  '[ "$(tar -tzf "$archive" | sort | tr "\n" " ")" = "LICENSE kubectl-redis " ]'
check "the manifest's sha256 is the archive's" \
  'grep -q "sha256: \"$(sha256sum "$archive" | cut -d" " -f1)\"" "$manifest"'
check "the manifest's uri ends with the archive's name" \
  'grep -q "uri: \".*/$(basename "$archive")\"" "$manifest"'
check "no placeholder is left in the manifest" '! grep -q "@[A-Z_0-9]*@" "$manifest"'
check "the manifest is valid YAML (yamllint)" \
  'yamllint -d "{extends: relaxed, rules: {line-length: {max: 120}}}" "$manifest"'
mkdir -p "$out/install"
tar -xzf "$archive" -C "$out/install"
check "kubectl finds the installed plugin (kubectl plugin list)" \
  'PATH="$out/install:$PATH" kubectl plugin list 2>/dev/null | grep -q "$out/install/kubectl-redis"'
check "kubectl redis --help runs it" \
  'PATH="$out/install:$PATH" kubectl redis --help | grep -q "kubectl redis status"'
check "kubectl redis --version prints the release version" \
  'PATH="$out/install:$PATH" kubectl redis --version | grep -q "$(awk -F\" "/^version = / {print \$2; exit}" Cargo.toml)"'
if [ "$fail" -ne 0 ]; then
  echo "test-plugin: FAILED"
  exit 1
fi
echo "test-plugin: all checks passed"
