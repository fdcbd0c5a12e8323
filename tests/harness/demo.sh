#!/usr/bin/env bash
# `make demo`: a disposable local PostgreSQL with sample data, then the shipped backup, verify
# and list playbooks against it (inventories/local), and the resulting tree. Cleans up after.
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
PATH=$root/.venv/bin:$PATH
export ANSIBLE_COLLECTIONS_PATH=$root/.collections
export CCLITE_DEMO_ROOT=${CCLITE_DEMO_ROOT:-/tmp/cclite-demo}
export CCLITE_DEMO_PGPORT=${CCLITE_DEMO_PGPORT:-55432}
CCLITE_DEMO_PGPASSWORD=demo-$(od -An -N8 -tx8 /dev/urandom | tr -d ' ')
export CCLITE_DEMO_PGPASSWORD
pgbin=/usr/lib/postgresql/15/bin
data=$CCLITE_DEMO_ROOT/pgdata

[ -x "$pgbin/initdb" ] || { echo "demo: PostgreSQL 15 is not installed (apt-get install -y postgresql-15)" >&2; exit 1; }
as_pg() { (cd / && runuser -u postgres -- "$@"); }
stop() {
  if [ -d "$data" ]; then
    as_pg "$pgbin/pg_ctl" -D "$data" -m fast stop >/dev/null 2>&1 || true
  fi
}
trap stop EXIT

stop
rm -rf "$CCLITE_DEMO_ROOT"
mkdir -p "$CCLITE_DEMO_ROOT"
chmod 0755 "$CCLITE_DEMO_ROOT"
install -d -o postgres -m 0700 "$data"
pwfile=$(mktemp)
printf '%s' "$CCLITE_DEMO_PGPASSWORD" >"$pwfile"
chown postgres "$pwfile"
echo "== Starting a disposable PostgreSQL on 127.0.0.1:$CCLITE_DEMO_PGPORT"
as_pg "$pgbin/initdb" -D "$data" -U postgres --pwfile="$pwfile" --auth=scram-sha-256 -E UTF8 --locale=C.UTF-8 >/dev/null
rm -f "$pwfile"
as_pg "$pgbin/pg_ctl" -D "$data" -w -l "$data/postgresql.log" \
  -o "-p $CCLITE_DEMO_PGPORT -k $data -c listen_addresses=127.0.0.1" start >/dev/null
PGPASSWORD=$CCLITE_DEMO_PGPASSWORD psql -X -q -h 127.0.0.1 -p "$CCLITE_DEMO_PGPORT" -U postgres -d postgres -v ON_ERROR_STOP=1 <<'SQL'
CREATE DATABASE operator_demo;
\connect operator_demo
CREATE TABLE users (id serial PRIMARY KEY, email text NOT NULL);
CREATE TABLE conversations (id serial PRIMARY KEY, user_id int REFERENCES users(id), summary text);
INSERT INTO users (email) SELECT 'agent' || g || '@example.com' FROM generate_series(1, 500) g;
INSERT INTO conversations (user_id, summary) SELECT 1 + g % 500, 'conversation ' || g FROM generate_series(1, 5000) g;
SQL
echo "== Sample data: 500 users, 5000 conversations in operator_demo"

cd "$root"
inv=inventories/local/hosts.yml
echo "== ansible-playbook playbooks/backup.yml"
ansible-playbook -i "$inv" playbooks/backup.yml
echo "== ansible-playbook playbooks/verify.yml"
ansible-playbook -i "$inv" playbooks/verify.yml
echo "== ansible-playbook playbooks/list.yml"
ansible-playbook -i "$inv" playbooks/list.yml
echo "== The backup tree"
find "$CCLITE_DEMO_ROOT/backups" \( -type l -printf '%M %10s  %p -> %l\n' \) -o -printf '%M %10s  %p\n' |
  sed "s|$CCLITE_DEMO_ROOT/||" | sort -k3
echo "== Demo done; the backups stay in $CCLITE_DEMO_ROOT/backups (the server is stopped)"
