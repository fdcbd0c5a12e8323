"""The data that prepare.yml seeded came back after converge.yml's wipe and restore."""

from __future__ import annotations

import json

import pytest

SEEDED = {"cclite-postgresql-1": 1200, "cclite-postgresql-2": 2300}


def psql(host, database, sql):
    result = host.run("runuser -u postgres -- psql -X -At -d %s -c %s" % (database, json.dumps(sql)))
    assert result.rc == 0, result.stderr
    return result.stdout.strip()


@pytest.fixture()
def users(host):
    return SEEDED[host.backend.get_hostname()]


def test_tables_and_rows_came_back(host, users):
    assert psql(host, "operator_demo", "SELECT count(*) FROM users") == str(users)
    assert psql(host, "operator_demo", "SELECT count(*) FROM conversations") == str(3 * users)
    assert psql(host, "operator_demo", "SELECT email FROM users WHERE id = %d" % users) == "agent%d@example.com" % users
    expected = host.run(
        "python3 -c \"import hashlib; print(hashlib.md5(','.join('message %%d \\u2603' %% g for g in range(1, %d)).encode()).hexdigest())\""
        % (3 * users + 1)
    ).stdout.strip()
    actual = psql(host, "operator_demo", "SELECT md5(string_agg(body, ',' ORDER BY id)) FROM conversations")
    assert actual == expected


def test_second_database_came_back(host):
    if host.backend.get_hostname() != "cclite-postgresql-2":
        pytest.skip("one database on this instance")
    assert psql(host, "analytics", "SELECT count(*), sum(hits) FROM daily") == "365|199290"


def test_catalog_and_manifests(host, users):
    name = host.backend.get_hostname()
    pattern = "postgres_backup_operator_demo_" if name == "cclite-postgresql-2" else "postgres_backup_2"
    ext = ".sql.zst" if name == "cclite-postgresql-2" else ".sql.gz"
    files = host.run("ls /srv/backups/postgresql").stdout.split()
    backups = [f for f in files if f.startswith(pattern) and f.endswith(ext)]
    assert len(backups) == 1, files
    latest = "latest_operator_demo" + ext if name == "cclite-postgresql-2" else "latest" + ext
    assert host.file("/srv/backups/postgresql/" + latest).linked_to == "/srv/backups/postgresql/" + backups[0]
    manifest = json.loads(host.file("/srv/backups/postgresql/%s.manifest.json" % backups[0]).content_string)
    assert manifest["source"]["tables"] == {"public.users": users, "public.conversations": 3 * users}
    assert host.run("sha256sum /srv/backups/postgresql/%s" % backups[0]).stdout.split()[0] == manifest["artifact"]["sha256"]
    assert host.file("/srv/backups/postgresql/" + backups[0]).mode == 0o600


def test_the_replaced_database_is_kept_with_the_wiped_data(host):
    """The defaults: no safety dump, the replaced database kept (connections disabled) as the way back."""
    name = host.backend.get_hostname()
    safety = host.run("ls /srv/backups/postgresql/safety 2>/dev/null").stdout.split()
    assert not [f for f in safety if f.startswith("postgres_safety_")], safety
    kept = psql(host, "postgres", "SELECT datname FROM pg_database WHERE datname LIKE 'operator\\_demo\\_\\_pre\\_restore\\_%'").split()
    assert len(kept) == 1, kept
    assert psql(host, "postgres", "SELECT datallowconn FROM pg_database WHERE datname = '%s'" % kept[0]) == "f"
    psql(host, "postgres", 'ALTER DATABASE "%s" ALLOW_CONNECTIONS true' % kept[0])
    try:
        assert psql(host, kept[0], "SELECT count(*) FROM users") == "10"  # the wiped data it replaced
    finally:
        psql(host, "postgres", 'ALTER DATABASE "%s" ALLOW_CONNECTIONS false' % kept[0])
    if name == "cclite-postgresql-2":
        # analytics was dropped: nothing to keep, restored from nothing
        assert psql(host, "postgres", "SELECT count(*) FROM pg_database WHERE datname LIKE 'analytics\\_\\_pre\\_restore%'") == "0"
