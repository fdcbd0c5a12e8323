"""Every key, value and expiry that prepare.yml seeded came back after converge.yml's wipe and
restore, through the shipped playbooks; the catalog, manifest, safety copy and AOF agree."""

from __future__ import annotations

import json

import pytest

PASSWORDS = {"cclite-redis-1": "molecule-Redis-1a2", "cclite-redis-2": "molecule-Redis-9f8"}
SEEDED = {
    "db0": {"keys": 513, "expires": 3},
    "db1": {"keys": 2, "expires": 0},
    "db5": {"keys": 3, "expires": 1},
    "db15": {"keys": 1, "expires": 0},
}
STORE = "/srv/backups/redis"


@pytest.fixture()
def name(host):
    return host.backend.get_hostname()


def compare(host, name):
    result = host.run("REDISCLI_AUTH=%s python3 /root/redis_data.py compare --expect /root/seed.json" % PASSWORDS[name])
    report = json.loads(result.stdout)
    assert report["problems"] == [], report
    assert result.rc == 0 and report["keys"] == report["expected"] == 519


def redis(host, name, *args):
    result = host.run("REDISCLI_AUTH=%s redis-cli %s" % (PASSWORDS[name], " ".join(args)))
    assert result.rc == 0, result.stderr
    return result.stdout.strip()


def test_every_key_value_and_expiry_came_back(host, name):
    compare(host, name)
    assert redis(host, name, "EXISTS", "stray") == "0"


def test_catalog_and_manifest(host, name):
    ext = ".rdb.zst" if name == "cclite-redis-2" else ".rdb.gz"
    files = host.run("ls %s" % STORE).stdout.split()
    backups = [f for f in files if f.startswith("redis_backup_") and f.endswith(ext)]
    assert len(backups) == 1, files
    assert host.file("%s/latest%s" % (STORE, ext)).linked_to == "%s/%s" % (STORE, backups[0])
    manifest = json.loads(host.file("%s/%s.manifest.json" % (STORE, backups[0])).content_string)
    source = manifest["source"]
    assert source["databases"] == SEEDED and source["keys"] == 519 and source["counts_exact"]
    assert source["rdb_version"] == 10 and source["redis_version"].startswith("7.")
    assert source["aof_enabled"] is (name == "cclite-redis-2")
    assert host.run("sha256sum %s/%s" % (STORE, backups[0])).stdout.split()[0] == manifest["artifact"]["sha256"]
    assert host.file("%s/%s" % (STORE, backups[0])).mode == 0o600


def test_safety_copy_holds_the_lost_state(host, name):
    safety = [f for f in host.run("ls %s/safety" % STORE).stdout.split() if f.startswith("redis_safety_") and not f.endswith(".json")]
    assert len(safety) == 1, safety
    manifest = json.loads(host.file("%s/safety/%s.manifest.json" % (STORE, safety[0])).content_string)
    assert manifest["kind"] == "safety"
    assert manifest["source"]["databases"] == {"db0": {"keys": 1, "expires": 0}}


def test_files_belong_to_redis(host, name):
    dump = host.file("/var/lib/redis/dump.rdb")
    assert dump.user == "redis" and dump.group == "redis"
    assert not [f for f in host.run("ls -A /var/lib/redis").stdout.split() if f.startswith(".")]


def test_aof_no_longer_shadows_the_rdb_and_survives_a_restart(host, name):
    if name != "cclite-redis-2":
        pytest.skip("appendonly no on this instance")
    aof_dir = "/var/lib/redis/appendonlydir"
    manifest = host.file(aof_dir + "/appendonly.aof.manifest").content_string
    listed = [line.split()[1] for line in manifest.splitlines()]
    present = host.run("ls %s" % aof_dir).stdout.split()
    assert sorted(present) == sorted(listed + ["appendonly.aof.manifest"])  # the replaced AOF files are gone
    assert host.file(aof_dir + "/" + listed[0]).user == "redis"
    assert host.run("service redis-server restart").rc == 0
    for _attempt in range(50):
        if "loading:0" in host.run("REDISCLI_AUTH=%s redis-cli INFO persistence" % PASSWORDS[name]).stdout:
            break
        host.run("sleep 0.2")
    compare(host, name)  # loaded from the AOF this time
