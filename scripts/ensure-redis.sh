#!/usr/bin/env bash
# Start a throwaway Redis on the configured port if none answers there.
set -euo pipefail
host="${REDIS_HOST:-127.0.0.1}"
port="${REDIS_PORT:-6379}"
ping() { python3 - "$host" "$port" <<'PY'
import socket, sys
try:
    with socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=1) as s:
        s.sendall(b"PING\r\n")
        sys.exit(0 if s.recv(16).startswith(b"+PONG") else 1)
except OSError:
    sys.exit(1)
PY
}
if ping; then exit 0; fi
if [ "$host" != "127.0.0.1" ] && [ "$host" != "localhost" ]; then
  echo "Redis at $host:$port does not answer; start it or set REDIS_HOST/REDIS_PORT" >&2
  exit 1
fi
if ! command -v redis-server >/dev/null 2>&1; then
  echo "no Redis answers on $host:$port and redis-server is not installed (apt-get install redis-server)" >&2
  exit 1
fi
echo "starting redis-server on 127.0.0.1:$port"
redis-server --daemonize yes --bind 127.0.0.1 --port "$port" --save "" --appendonly no >/dev/null
for _ in $(seq 50); do ping && exit 0; sleep 0.1; done
echo "redis-server did not come up on port $port" >&2
exit 1
