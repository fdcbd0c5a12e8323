#!/usr/bin/env bash
# Entry point of the cc-lite stack image: `start.sh postgres|redis|qdrant|backend` runs that
# service in the foreground. Secrets come from the environment (POSTGRES_PASSWORD,
# REDIS_PASSWORD, QDRANT_API_KEY) and go to config files or stdin, not to argv, except the Qdrant
# test server's key, which it only takes as an option.
set -euo pipefail

case ${1:-} in
postgres)
  conf=/etc/postgresql/15/main
  data=/var/lib/postgresql/15/main
  grep -q '^listen_addresses' "$conf/postgresql.conf" ||
    echo "listen_addresses = '*'" >>"$conf/postgresql.conf"
  grep -q 'cc-lite' "$conf/pg_hba.conf" ||
    echo 'host all all 0.0.0.0/0 scram-sha-256  # cc-lite network' >>"$conf/pg_hba.conf"
  mkdir -p /var/run/postgresql && chown postgres:postgres /var/run/postgresql
  if [ -n "${POSTGRES_PASSWORD:-}" ]; then
    # Single-user mode reads the statement from stdin: the password is in no argv.
    printf "ALTER USER postgres PASSWORD '%s';\n" "${POSTGRES_PASSWORD//\'/\'\'}" |
      runuser -u postgres -- /usr/lib/postgresql/15/bin/postgres --single -D "$data" \
        -c config_file="$conf/postgresql.conf" postgres >/dev/null
  fi
  exec runuser -u postgres -- /usr/lib/postgresql/15/bin/postgres -D "$data" -c config_file="$conf/postgresql.conf"
  ;;
redis)
  umask 077
  {
    echo 'bind 0.0.0.0'
    echo 'protected-mode no'
    echo 'dir /data'
    echo 'dbfilename dump.rdb'
    echo 'appendonly no'
    [ -z "${REDIS_PASSWORD:-}" ] || echo "requirepass \"$REDIS_PASSWORD\""
  } >/etc/redis/cc-lite.conf
  exec redis-server /etc/redis/cc-lite.conf
  ;;
qdrant)
  exec /opt/qdrant-venv/bin/python -m qdrant_server --host 0.0.0.0 --port 6333 --storage /qdrant/storage \
    --quiet ${QDRANT_API_KEY:+--api-key "$QDRANT_API_KEY"}
  ;;
backend)
  exec python3 /opt/cc-lite/backend.py
  ;;
*)
  echo "usage: start.sh postgres|redis|qdrant|backend" >&2
  exit 2
  ;;
esac
