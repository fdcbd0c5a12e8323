"""Instance 2 had no data and no backups; after restore.yml with restore_source=s3 it holds
what instance 1 was seeded with. The copies on S3 are encrypted; the local ones are not."""

from __future__ import annotations

import base64
import json
import os
import re

import pytest

USERS = 1700
REDIS_PASSWORD = "molecule-Redis-0ff"  # molecule.yml
QDRANT_KEY = "molecule-Qdrant-0ff"
QDRANT_SEED = json.load(open(os.path.join(os.path.dirname(__file__), "..", "..", "qdrant", "files", "seed.json"), encoding="utf-8"))
SOURCE, FRESH, ENDPOINT = "cclite-offsite-1", "cclite-offsite-2", "cclite-offsite-s3"
MAGIC = b"cclite.backup/aead-v1\n"

LIST_OBJECTS = r"""
import json, boto3
s3 = boto3.client("s3", endpoint_url="http://127.0.0.1:5000", region_name="us-east-1",
                  aws_access_key_id="molecule-access", aws_secret_access_key="molecule-Secret-5d1c")
out = {}
for obj in s3.list_objects_v2(Bucket="cclite-molecule-offsite").get("Contents", []):
    body = s3.get_object(Bucket="cclite-molecule-offsite", Key=obj["Key"])["Body"].read()
    head = s3.head_object(Bucket="cclite-molecule-offsite", Key=obj["Key"], ChecksumMode="ENABLED")
    out[obj["Key"]] = {"head": body[:22].hex(), "size": obj["Size"], "class": obj.get("StorageClass"),
                       "checksum": head.get("ChecksumSHA256"),
                       "json": json.loads(body) if obj["Key"].endswith(".json") else None}
print(json.dumps(out))
"""


def name(host):
    return host.backend.get_hostname()


def psql(host, database, sql):
    result = host.run("runuser -u postgres -- psql -X -At -d %s -c %s" % (database, json.dumps(sql)))
    assert result.rc == 0, result.stderr
    return result.stdout.strip()


def only(host, *names):
    if name(host) not in names:
        pytest.skip("not on this instance")


def test_the_fresh_instance_got_the_data_back(host):
    only(host, FRESH, SOURCE)
    assert psql(host, "operator_demo", "SELECT count(*) FROM users") == str(USERS)
    assert psql(host, "operator_demo", "SELECT count(*) FROM conversations") == str(3 * USERS)
    assert psql(host, "operator_demo", "SELECT email FROM users WHERE id = %d" % USERS) == "agent%d@example.com" % USERS
    expected = host.run(
        "python3 -c \"import hashlib; print(hashlib.md5(','.join('message %%d \\u2603' %% g for g in range(1, %d)).encode()).hexdigest())\""
        % (3 * USERS + 1)
    ).stdout.strip()
    assert psql(host, "operator_demo", "SELECT md5(string_agg(body, ',' ORDER BY id)) FROM conversations") == expected
    assert psql(host, "analytics", "SELECT count(*), sum(hits) FROM daily") == "365|199290"


def test_the_fresh_instance_restored_the_copies_from_s3(host):
    only(host, FRESH)
    files = host.run("ls /srv/backups/postgresql").stdout.split()
    for db in ("operator_demo", "analytics"):
        backups = [f for f in files if f.startswith("postgres_backup_%s_" % db) and f.endswith(".sql.gz")]
        assert len(backups) == 1, files
        path = "/srv/backups/postgresql/" + backups[0]
        assert host.file("/srv/backups/postgresql/latest_%s.sql.gz" % db).linked_to == path
        manifest = json.loads(host.file(path + ".manifest.json").content_string)
        assert manifest["host"] == SOURCE  # restore_from_host: instance 1's series, recorded in its manifests
        assert re.fullmatch(r"\d{8}_\d{6}", manifest["run_id"])
        assert manifest["encryption"] is None  # the local copy is plaintext
        assert manifest["fetched_from"]["encryption"]["algorithm"] == "cclite-aead-v1"
        assert manifest["fetched_from"]["url"].startswith("s3://cclite-molecule-offsite/cc-lite/backups/postgresql/")
        assert host.run("sha256sum %s" % path).stdout.split()[0] == manifest["artifact"]["sha256"]
        assert host.file(path).content[:2] == b"\x1f\x8b"  # gzip, decrypted
        assert host.file(path).mode == 0o600


def test_the_source_instance_keeps_plaintext_backups(host):
    only(host, SOURCE)
    files = host.run("ls /srv/backups/postgresql").stdout.split()
    backups = [f for f in files if f.startswith("postgres_backup_") and f.endswith(".sql.gz")]
    assert len(backups) == 2, files
    for backup in backups:
        assert host.file("/srv/backups/postgresql/" + backup).content[:2] == b"\x1f\x8b"


def test_the_copies_on_s3_are_encrypted_and_checksummed(host):
    only(host, ENDPOINT)
    script = base64.b64encode(LIST_OBJECTS.encode()).decode()
    result = host.run("/opt/moto/bin/python -c 'import base64; exec(base64.b64decode(\"%s\"))'" % script)
    assert result.rc == 0, result.stderr
    objects = json.loads(result.stdout)
    artifacts = {k: v for k, v in objects.items() if k.endswith(".sql.gz")}
    manifests = {k: v for k, v in objects.items() if k.endswith(".sql.gz.manifest.json")}
    assert len(artifacts) == 2 and len(manifests) == 2, sorted(objects)
    for key, obj in artifacts.items():
        assert key.startswith("cc-lite/backups/postgresql/postgres_backup_")
        assert bytes.fromhex(obj["head"]) == MAGIC
        assert obj["class"] == "STANDARD_IA"
        manifest = manifests[key + ".manifest.json"]["json"]
        assert manifest["encryption"]["algorithm"] == "cclite-aead-v1"
        assert manifest["host"] == SOURCE and re.fullmatch(r"\d{8}_\d{6}", manifest["run_id"])
        assert len(manifest["encryption"]["key_id"]) == 16
        assert "molecule-offsite-key" not in json.dumps(manifest)
        assert manifest["encryption"]["ciphertext"]["size"] == obj["size"] == manifest["offsite"]["size"]
        assert manifest["offsite"]["checksum"]["value"].split("-")[0] == obj["checksum"].split("-")[0]
        assert manifest["artifact"]["size"] < obj["size"]


def qdrant(host, method, path, body=None):
    command = "curl -sS --fail-with-body -X %s -H 'api-key: %s' -H 'Content-Type: application/json' http://localhost:6337%s" % (
        method, QDRANT_KEY, path)
    if body is not None:
        command += " --data-binary %s" % json.dumps(json.dumps(body))
    result = host.run(command)
    assert result.rc == 0, result.stdout + result.stderr
    return json.loads(result.stdout)["result"]


def test_the_fresh_instance_got_every_redis_key_back(host):
    only(host, FRESH)
    # /root/seed.json is instance 1's snapshot (prepare.yml): every key, value and expiry
    result = host.run("REDISCLI_AUTH=%s python3 /root/redis_data.py compare --expect /root/seed.json" % REDIS_PASSWORD)
    assert result.rc == 0, result.stdout + result.stderr
    stray = host.run("REDISCLI_AUTH=%s redis-cli EXISTS stray" % REDIS_PASSWORD)
    assert stray.stdout.strip() == "0"  # the fresh instance's own key is gone: the data is instance 1's


@pytest.mark.parametrize("collection", sorted(QDRANT_SEED))
def test_the_fresh_instance_got_every_qdrant_point_back(host, collection):
    only(host, FRESH)
    points = qdrant(host, "POST", "/collections/%s/points/scroll" % collection,
                    {"limit": 1000, "with_payload": True, "with_vector": True})["points"]
    expected = {json.dumps(p["id"]): p for p in QDRANT_SEED[collection]["points"]}
    actual = {json.dumps(p["id"]): p for p in points}
    assert sorted(actual) == sorted(expected)
    for point_id, point in expected.items():
        assert actual[point_id]["vector"] == point["vector"], point_id
        assert actual[point_id]["payload"] == point["payload"], point_id


def test_the_fresh_instance_restored_one_set_of_instance_1(host):
    only(host, FRESH)
    run_ids = set()
    for store, pattern in (("redis", "redis_backup_*.rdb.gz"), ("qdrant", "qdrant_backup_*.tar.gz")):
        found = host.run("ls /srv/backups/%s/%s" % (store, pattern)).stdout.split()
        assert len(found) == 1, found
        manifest = json.loads(host.file(found[0] + ".manifest.json").content_string)
        assert manifest["host"] == SOURCE
        assert manifest["fetched_from"]["url"].startswith("s3://cclite-molecule-offsite/cc-lite/backups/%s/" % store)
        run_ids.add(manifest["run_id"])
    assert len(run_ids) == 1 and re.fullmatch(r"\d{8}_\d{6}", run_ids.pop())
