#!/usr/bin/env bash
# Side by side on the same Redis, in one run: redis-instance-manager (release build) vs
# prometheus-redis-exporter. Prints resident memory after warm-up, mean scrape latency over
# $SCRAPES scrapes and CPU time per scrape (utime+stime from /proc/<pid>/stat).
#
# Usage: hack/bench-instance-manager.sh        (or: make bench-instance-manager)
# Env:   SCRAPES=100  WARMUP_SECONDS=5  CARGO=cargo  IM_BIN=<prebuilt binary, skips the build>
set -euo pipefail

SCRAPES=${SCRAPES:-100}
WARMUP_SECONDS=${WARMUP_SECONDS:-5}
CARGO=${CARGO:-cargo}
ROOT=$(cd "$(dirname "$0")/.." && pwd)

for tool in redis-server redis-cli prometheus-redis-exporter curl; do
  command -v "$tool" >/dev/null || { echo "bench: $tool is not installed (make deps)" >&2; exit 1; }
done

if [[ -z "${IM_BIN:-}" ]]; then
  echo "building redis-instance-manager (release)..." >&2
  (cd "$ROOT" && "$CARGO" build -q --release -p redis-instance-manager)
  TARGET_DIR=$(cd "$ROOT" && "$CARGO" metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
  IM_BIN="$TARGET_DIR/release/redis-instance-manager"
fi
echo "instance manager binary: $IM_BIN ($(stat -c %s "$IM_BIN") bytes)" >&2

WORK=$(mktemp -d /tmp/bench-im.XXXXXX)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

SRC_PORT=$(free_port); REP_PORT=$(free_port); IM_PORT=$(free_port); EXP_PORT=$(free_port)
mkdir -p "$WORK/src" "$WORK/rep"
redis-server --port "$SRC_PORT" --bind 127.0.0.1 --dir "$WORK/src" --save "" --logfile "$WORK/src/log" --repl-diskless-sync-delay 0 &
PIDS+=($!)
redis-server --port "$REP_PORT" --bind 127.0.0.1 --dir "$WORK/rep" --save "" --logfile "$WORK/rep/log" &
PIDS+=($!)
for p in "$SRC_PORT" "$REP_PORT"; do
  for _ in $(seq 50); do redis-cli -p "$p" ping >/dev/null 2>&1 && break; sleep 0.1; done
done
# Some data, so INFO keyspace and the replication stream are not empty.
redis-cli -p "$SRC_PORT" debug populate 10000 key 100 >/dev/null

# The replica is what both exporters watch: the sidecar manages it (replica of the source).
printf 'redis.io/topology="{\\"version\\":1,\\"cluster\\":\\"bench\\",\\"epoch\\":1,\\"role\\":\\"replica\\",\\"upstream\\":{\\"kind\\":\\"external\\",\\"host\\":\\"127.0.0.1\\",\\"port\\":%s},\\"replicaPriority\\":0,\\"replicaAnnounced\\":false}"\n' "$SRC_PORT" > "$WORK/annotations"
"$IM_BIN" --cluster bench --namespace bench --pod bench-0 --redis-addr "127.0.0.1:$REP_PORT" \
  --topology-file "$WORK/annotations" --http-addr "127.0.0.1:$IM_PORT" >"$WORK/im.log" 2>&1 &
IM_PID=$!; PIDS+=($IM_PID)
prometheus-redis-exporter --redis.addr "redis://127.0.0.1:$REP_PORT" --web.listen-address "127.0.0.1:$EXP_PORT" >"$WORK/exp.log" 2>&1 &
EXP_PID=$!; PIDS+=($EXP_PID)

for url in "http://127.0.0.1:$IM_PORT/metrics" "http://127.0.0.1:$EXP_PORT/metrics"; do
  for _ in $(seq 100); do curl -fs -o /dev/null "$url" && break; sleep 0.1; done
done
for _ in $(seq 100); do
  redis-cli -p "$REP_PORT" info replication | grep -q master_link_status:up && break; sleep 0.1
done

# Warm-up: let both settle, and scrape each 20 times.
sleep "$WARMUP_SECONDS"
for _ in $(seq 20); do
  curl -fs -o /dev/null "http://127.0.0.1:$IM_PORT/metrics"
  curl -fs -o /dev/null "http://127.0.0.1:$EXP_PORT/metrics"
done

CLK_TCK=$(getconf CLK_TCK)
rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

# measure <pid> <url>: prints "rss_kib mean_latency_ms cpu_ms_per_scrape series"
measure() {
  local pid=$1 url=$2 rss t0 t1 total
  rss=$(rss_kib "$pid")
  t0=$(cpu_ticks "$pid")
  total=$(for _ in $(seq "$SCRAPES"); do curl -fs -o /dev/null -w '%{time_total}\n' "$url"; done | awk '{s+=$1} END {printf "%.3f", s*1000/NR}')
  t1=$(cpu_ticks "$pid")
  series=$(curl -fs "$url" | grep -vc '^#')
  echo "$rss $total $(awk -v d=$((t1 - t0)) -v hz="$CLK_TCK" -v n="$SCRAPES" 'BEGIN {printf "%.3f", d*1000/hz/n}') $series"
}

read -r IM_RSS IM_LAT IM_CPU IM_SERIES < <(measure "$IM_PID" "http://127.0.0.1:$IM_PORT/metrics")
read -r EXP_RSS EXP_LAT EXP_CPU EXP_SERIES < <(measure "$EXP_PID" "http://127.0.0.1:$EXP_PORT/metrics")

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a/b; else print "n/a" }'; }
EXP_VERSION=$(prometheus-redis-exporter --version 2>&1 | sed -n 's/.*Redis Metrics Exporter \([^ ]*\).*/\1/p' | head -1 || true)
REDIS_VERSION=$(redis-server --version | awk '{print $3}' | sed 's/^v=//')

echo
echo "machine: $(nproc) cores, $(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo), $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), kernel $(uname -r); redis-server $REDIS_VERSION; prometheus-redis-exporter $EXP_VERSION"
echo "scrapes: $SCRAPES per target, sequential, after ${WARMUP_SECONDS}s warm-up and 20 scrapes each"
echo
printf '| %-32s | %14s | %26s | %8s |\n' "metric" "instance-mgr" "prometheus-redis-exporter" "ratio"
printf '|%s|%s|%s|%s|\n' "$(printf -- '-%.0s' {1..34})" "$(printf -- '-%.0s' {1..16})" "$(printf -- '-%.0s' {1..28})" "$(printf -- '-%.0s' {1..10})"
printf '| %-32s | %14s | %26s | %8s |\n' "RSS after warm-up (KiB)" "$IM_RSS" "$EXP_RSS" "$(ratio "$IM_RSS" "$EXP_RSS")"
printf '| %-32s | %14s | %26s | %8s |\n' "mean scrape latency (ms)" "$IM_LAT" "$EXP_LAT" "$(ratio "$IM_LAT" "$EXP_LAT")"
printf '| %-32s | %14s | %26s | %8s |\n' "CPU time per scrape (ms)" "$IM_CPU" "$EXP_CPU" "$(ratio "$IM_CPU" "$EXP_CPU")"
printf '| %-32s | %14s | %26s | %8s |\n' "series per scrape" "$IM_SERIES" "$EXP_SERIES" ""
echo
echo "(instance-mgr CPU includes its 1 s reconcile loop running during the scrapes; ratio = instance-mgr / exporter)"
