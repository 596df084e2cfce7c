set -eu
umask 077
conf=${SENTINEL_CONF:-/data/sentinel.conf}
template=${SENTINEL_TEMPLATE:-/etc/redis/conf/sentinel.conf}
primary_file=${PRIMARY_FILE:-/etc/redis/conf/primary}
password_file=${PASSWORD_FILE:-/etc/redis/auth/password}
: "${MASTER_NAME:?}" "${QUORUM:?}" "${ANNOUNCE_HOST:?}"
valid() { case "$1" in ''|*[!A-Za-z0-9.:-]*) return 1;; esac; }
if [ -f "$password_file" ]; then
  REDISCLI_AUTH=$(tr -d '\n' < "$password_file"); export REDISCLI_AUTH
fi
host=
port=
for peer in ${SENTINEL_PEERS:-}; do
  answer=$(timeout 2 redis-cli -h "${peer%:*}" -p "${peer##*:}" SENTINEL get-master-addr-by-name "$MASTER_NAME" 2>/dev/null || true)
  host=$(printf '%s\n' "$answer" | sed -n 1p)
  port=$(printf '%s\n' "$answer" | sed -n 2p)
  if valid "$host" && valid "$port"; then break; fi
  host=
done
if [ -z "$host" ]; then
  [ ! -s "$primary_file" ] || host=$(tr -d ' \n' < "$primary_file")
  valid "$host" || host=${DEFAULT_PRIMARY:?}
  port=${REDIS_PORT:-6379}
fi
valid "$host"
valid "$port"
valid "$MASTER_NAME"
valid "$QUORUM"
{
  sed -e "s|^# sentinel monitor: added at start\$|sentinel monitor $MASTER_NAME $host $port $QUORUM|" "$template"
  printf 'sentinel announce-ip %s\n' "$ANNOUNCE_HOST"
  if [ -f "$password_file" ]; then
    pw() { sed -e 's/[\\"]/\\&/g' "$password_file" | tr -d '\n'; }
    printf 'requirepass "'; pw
    printf '"\nsentinel auth-pass %s "' "$MASTER_NAME"; pw
    printf '"\nsentinel sentinel-pass "'; pw; printf '"\n'
  fi
} > "$conf.new"
mv "$conf.new" "$conf"
