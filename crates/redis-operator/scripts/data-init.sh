set -eu
umask 077
keep=$(grep -E '^(replicaof|slaveof) ' /data/redis.conf 2>/dev/null || true)
persisted=$keep
announce=${ANNOUNCE_HOST:-}
if [ -z "$keep" ] && [ -n "${SENTINEL_HOST:-}" ]; then
  valid() { case "$1" in ''|*[!A-Za-z0-9.:-]*) return 1;; esac; }
  if [ -f /etc/redis/auth/password ]; then
    REDISCLI_AUTH=$(tr -d '\n' < /etc/redis/auth/password); export REDISCLI_AUTH
  fi
  self="$announce:${REDIS_PORT:-6379}"
  answer=$(timeout 3 redis-cli -h "$SENTINEL_HOST" -p "${SENTINEL_PORT:-26379}" SENTINEL get-master-addr-by-name "$MASTER_NAME" 2>/dev/null || true)
  host=$(printf '%s\n' "$answer" | sed -n 1p)
  port=$(printf '%s\n' "$answer" | sed -n 2p)
  if ! valid "$host" || ! valid "$port"; then
    host=
    [ ! -s /etc/redis/conf/primary ] || host=$(tr -d ' \n' < /etc/redis/conf/primary)
    valid "$host" || host=${DEFAULT_PRIMARY:-}
    port=${REDIS_PORT:-6379}
  fi
  if valid "$host" && [ "$host:$port" != "$self" ]; then
    keep="replicaof $host $port"
  fi
fi
gate=
if [ -d /data/appendonlydir ] || [ -s /data/dump.rdb ] || [ -n "$persisted" ]; then
  gate=$(od -An -tx1 -N16 /dev/urandom | tr -d ' \n')
fi
mkdir -p /data/instance-manager
{
  printf 'include /etc/redis/conf/redis.conf\n'
  [ -z "$announce" ] || printf 'replica-announce-ip %s\n' "$announce"
  [ -z "$gate" ] || printf 'masteruser gate-closed-%s\nmasterauth gate-closed-%s\n' "$gate" "$gate"
  [ -z "$keep" ] || printf '%s\n' "$keep"
} > /data/redis.conf.new
mv /data/redis.conf.new /data/redis.conf
if [ -f /etc/redis/auth/password ]; then
  pw() { sed -e 's/[\\"]/\\&/g' /etc/redis/auth/password | tr -d '\n'; }
  { printf 'requirepass "'; pw; printf '"\nmasterauth "'; pw; printf '"\n'; } > /run/redis/auth.conf
fi
