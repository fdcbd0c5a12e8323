"""Testinfra checks for the harness smoke scenario: both engines answer on every instance."""

from __future__ import annotations


def test_postgresql_answers(host):
    result = host.run("su postgres -c \"psql -XAtc 'select datname from pg_database order by 1'\"")
    assert result.rc == 0, result.stderr
    assert "smoke" in result.stdout.split()


def test_redis_answers(host):
    assert host.run("redis-cli ping").stdout.strip() == "PONG"
    assert host.run("redis-cli set smoke ok").stdout.strip() == "OK"
    assert host.run("redis-cli get smoke").stdout.strip() == "ok"
