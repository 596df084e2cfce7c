#!/usr/bin/env bash
# The memory rule under a real limit: a primary filled up to the maxmemory the operator derives
# from a container memory limit (`redis-operator render`), a writer running, then a replica
# attaching (a full sync: the primary forks, copy-on-write pages pile up, the replica's output
# buffer fills with the writes made meanwhile). Both redis-servers run in memory cgroups with
# that limit (the kubelet's container limit); the script prints each one's peak usage against
# the limit and whether the kernel OOM-killed anything. The baseline, in the same run and the
# same way: maxmemory at 90% of the limit (a common hand setting). The writer is
# redis-benchmark (SET over the existing keys, pipelined) for WRITE_SECONDS.
#
# Usage: hack/bench-memory.sh        (or: make bench-memory; needs root and the cgroup v1 memory
#        controller at /sys/fs/cgroup/memory, or cgroup v2 at /sys/fs/cgroup)
# Env:   LIMIT=1Gi  WRITE_SECONDS=20  VALUE_BYTES=1000  CARGO=cargo
set -euo pipefail

LIMIT=${LIMIT:-1Gi}
WRITE_SECONDS=${WRITE_SECONDS:-20}
VALUE_BYTES=${VALUE_BYTES:-1000}
CARGO=${CARGO:-cargo}
ROOT=$(cd "$(dirname "$0")/.." && pwd)

for tool in redis-server redis-cli redis-benchmark python3; do
  command -v "$tool" >/dev/null || { echo "bench-memory: $tool is not installed (make deps)" >&2; exit 1; }
done
[[ $(id -u) == 0 ]] || { echo "bench-memory: needs root (memory cgroups)" >&2; exit 1; }
if [[ -d /sys/fs/cgroup/memory ]]; then
  CG=v1; CGROOT=/sys/fs/cgroup/memory
elif [[ -f /sys/fs/cgroup/cgroup.controllers ]] && grep -qw memory /sys/fs/cgroup/cgroup.controllers; then
  CG=v2; CGROOT=/sys/fs/cgroup
else
  echo "bench-memory: no memory cgroup controller here" >&2; exit 1
fi

WORK=$(mktemp -d /tmp/bench-memory.XXXXXX)
PIDS=()
GROUPS_MADE=()
cleanup() {
  for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  sleep 0.5
  for g in "${GROUPS_MADE[@]}"; do rmdir "$g" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

bytes() { python3 -c "
import sys, re
m = re.fullmatch(r'([0-9.]+)(Ki|Mi|Gi|k|M|G)?', sys.argv[1])
u = {None: 1, 'k': 1e3, 'M': 1e6, 'G': 1e9, 'Ki': 1024, 'Mi': 1024**2, 'Gi': 1024**3}[m.group(2)]
print(int(float(m.group(1)) * u))" "$1"; }
LIMIT_BYTES=$(bytes "$LIMIT")

# The operator's own redis.conf lines for a cluster with this limit.
cat > "$WORK/rc.yaml" <<EOF
apiVersion: redis.io/v1
kind: RedisCluster
metadata: {name: bench, namespace: default}
spec:
  instances: 2
  storage: {size: 10Gi}
  resources: {limits: {memory: $LIMIT}}
EOF
(cd "$ROOT" && "$CARGO" run -q -p redis-operator -- render "$WORK/rc.yaml") > "$WORK/objects.yaml"
conf_value() { sed -n "s/^ *$1 \([0-9][0-9]*\).*/\1/p" "$WORK/objects.yaml" | head -1; }
OP_MAXMEMORY=$(conf_value maxmemory)
BACKLOG=$(conf_value repl-backlog-size)
BUF=$(sed -n 's/^ *client-output-buffer-limit replica \([0-9]* [0-9]* [0-9]*\).*/\1/p' "$WORK/objects.yaml" | head -1)
[[ -n "$OP_MAXMEMORY" && -n "$BACKLOG" && -n "$BUF" ]] || { echo "bench-memory: no maxmemory/backlog in the rendered redis.conf" >&2; exit 1; }

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# A memory cgroup with the limit; prints its path.
make_group() {
  local g="$CGROOT/bench-memory-$$-$1"
  mkdir "$g"; GROUPS_MADE+=("$g")
  if [[ $CG == v1 ]]; then
    echo "$LIMIT_BYTES" > "$g/memory.limit_in_bytes"
  else
    echo "$LIMIT_BYTES" > "$g/memory.max"
  fi
  echo "$g"
}
peak() { if [[ $CG == v1 ]]; then cat "$1/memory.max_usage_in_bytes"; else cat "$1/memory.peak" 2>/dev/null || echo 0; fi; }
ooms() {
  if [[ $CG == v1 ]]; then sed -n 's/^oom_kill \([0-9]*\)/\1/p' "$1/memory.oom_control" | head -1
  else sed -n 's/^oom_kill \([0-9]*\)/\1/p' "$1/memory.events"; fi
}

# Start redis-server inside group $1 with config file $2; prints its pid.
start_in() {
  local g=$1 conf=$2
  # Its output away from the caller's $(...), which would otherwise wait for it to exit.
  ( echo $BASHPID > "$g/cgroup.procs"; exec redis-server "$conf" ) >/dev/null 2>&1 &
  echo $!
}

# Wait for redis-server `pid` to answer on `port`; fail with its log if it exits or takes 10 s.
wait_up() {
  local port=$1 pid=$2 log=$3 i
  for i in $(seq 100); do
    redis-cli -p "$port" ping >/dev/null 2>&1 && return 0
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  echo "bench-memory: redis-server on $port did not start:" >&2; cat "$log" >&2 || true; exit 1
}

run_case() {
  local id=$1 name=$2 maxmemory=$3
  local d="$WORK/$id"; mkdir -p "$d/p" "$d/r"
  local pport rport; pport=$(free_port); rport=$(free_port)
  for side in p r; do
    local port=$pport; [[ $side == r ]] && port=$rport
    cat > "$d/$side.conf" <<EOF
port $port
bind 127.0.0.1
dir $d/$side
save ""
appendonly no
repl-diskless-sync yes
repl-diskless-sync-delay 0
repl-backlog-size $BACKLOG
client-output-buffer-limit replica $BUF
maxmemory $maxmemory
maxmemory-policy noeviction
logfile $d/$side.log
EOF
  done
  local gp gr; gp=$(make_group "$id-primary"); gr=$(make_group "$id-replica")
  local pp rp; pp=$(start_in "$gp" "$d/p.conf"); PIDS+=("$pp")
  wait_up "$pport" "$pp" "$d/p.log"
  # Fill to 95% of maxmemory with VALUE_BYTES values (DEBUG POPULATE is not enabled: a pipe).
  local n=$(( maxmemory * 95 / 100 / (VALUE_BYTES + 90) ))
  python3 - "$n" "$VALUE_BYTES" <<'PY' | redis-cli -p "$pport" --pipe >/dev/null
import sys
n, size = int(sys.argv[1]), int(sys.argv[2])
v = "x" * size
out = sys.stdout
for i in range(n):
    k = "key:%012d" % i  # redis-benchmark's key names: its SETs overwrite these
    out.write("*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n" % (len(k), k, size, v))
PY
  local used; used=$(redis-cli -p "$pport" info memory | sed -n 's/^used_memory:\([0-9]*\).*/\1/p')
  # A writer overwriting existing keys as fast as it can (the dataset keeps its size; every
  # write dirties pages the fork shares and lands in the replica's output buffer).
  timeout "$WRITE_SECONDS" redis-benchmark -p "$pport" -t set -r "$n" -d "$VALUE_BYTES" \
    -n 1000000000 -P 16 -c 4 -q >/dev/null 2>&1 & local wp=$!; PIDS+=("$wp")
  sleep 1
  rp=$(start_in "$gr" "$d/r.conf"); PIDS+=("$rp")
  wait_up "$rport" "$rp" "$d/r.log"
  redis-cli -p "$rport" replicaof 127.0.0.1 "$pport" >/dev/null
  local synced=no t0=$SECONDS
  while (( SECONDS - t0 < WRITE_SECONDS + 60 )); do
    if ! kill -0 "$pp" 2>/dev/null || ! kill -0 "$rp" 2>/dev/null; then break; fi
    if redis-cli -p "$rport" info replication | grep -q '^master_link_status:up'; then synced=yes; break; fi
    sleep 0.5
  done
  wait "$wp" 2>/dev/null || true
  local alive_p=yes alive_r=yes
  kill -0 "$pp" 2>/dev/null || alive_p=no
  kill -0 "$rp" 2>/dev/null || alive_r=no
  local mib=$((1024 * 1024))
  printf '%-38s maxmemory %5d MiB  dataset %5d MiB  primary peak %5d MiB (OOM kills %s, alive %s)  replica peak %5d MiB (OOM kills %s, alive %s)  full sync done: %s  limit %d MiB\n' \
    "$name" $((maxmemory / mib)) $((used / mib)) $(( $(peak "$gp") / mib )) "$(ooms "$gp")" "$alive_p" \
    $(( $(peak "$gr") / mib )) "$(ooms "$gr")" "$alive_r" "$synced" $((LIMIT_BYTES / mib))
  kill -9 "$pp" "$rp" 2>/dev/null || true
  wait "$pp" "$rp" 2>/dev/null || true
}

echo "limit $LIMIT: the operator renders maxmemory $OP_MAXMEMORY, repl-backlog-size $BACKLOG, client-output-buffer-limit replica $BUF"
run_case operator "operator (maxmemory from the rule)" "$OP_MAXMEMORY"
run_case baseline "baseline (maxmemory 90% of the limit)" $((LIMIT_BYTES * 90 / 100))
