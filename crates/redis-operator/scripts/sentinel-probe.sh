[ ! -f /etc/redis/auth/password ] || { REDISCLI_AUTH=$(tr -d '\n' < /etc/redis/auth/password); export REDISCLI_AUTH; }
redis-cli -p 26379 PING | grep -qx PONG
