"""Every point prepare.yml seeded came back after converge.yml's loss and restore, and the
backups are where the guide says, with nothing left on the server."""

from __future__ import annotations

import json
import os

import pytest

SEED = json.load(open(os.path.join(os.path.dirname(__file__), "..", "files", "seed.json"), encoding="utf-8"))
KEY = "molecule-Qdrant-key-5c1"  # molecule.yml: qdrant_backup_api_key
EXTENSION = {"cclite-qdrant-1": ".tar.gz", "cclite-qdrant-2": ".tar.zst"}


def api(host, method, path, body=None):
    command = "curl -sS --fail-with-body -X %s -H 'api-key: %s' -H 'Content-Type: application/json' http://localhost:6337%s" % (
        method, KEY, path)
    if body is not None:
        command += " --data-binary %s" % json.dumps(json.dumps(body))
    result = host.run(command)
    assert result.rc == 0, result.stdout + result.stderr
    return json.loads(result.stdout)["result"]


def key(point_id):
    return json.dumps(point_id)


@pytest.mark.parametrize("collection", sorted(SEED))
def test_every_point_came_back(host, collection):
    points = api(host, "POST", "/collections/%s/points/scroll" % collection,
                 {"limit": 1000, "with_payload": True, "with_vector": True})["points"]
    expected = {key(p["id"]): p for p in SEED[collection]["points"]}
    actual = {key(p["id"]): p for p in points}
    assert sorted(actual) == sorted(expected)
    for point_id, point in expected.items():
        assert actual[point_id]["vector"] == point["vector"], point_id
        assert actual[point_id]["payload"] == point["payload"], point_id
    assert api(host, "POST", "/collections/%s/points/count" % collection, {"exact": True})["count"] == len(expected)


def test_collections_config_and_aliases_came_back(host):
    for name, seed in SEED.items():
        assert api(host, "GET", "/collections/%s" % name)["config"]["params"]["vectors"] == seed["vectors"]
    aliases = {a["alias_name"]: a["collection_name"] for a in api(host, "GET", "/aliases")["aliases"]}
    assert aliases == {alias: name for name, seed in SEED.items() for alias in seed["aliases"]}


def test_no_snapshot_is_left_on_the_server(host):
    for name in SEED:
        assert api(host, "GET", "/collections/%s/snapshots" % name) == []
    assert api(host, "GET", "/snapshots") == []


def test_catalog_and_manifest(host):
    name = host.backend.get_hostname()
    ext = EXTENSION[name]
    files = host.run("ls /srv/backups/qdrant").stdout.split()
    backups = [f for f in files if f.startswith("qdrant_backup_") and f.endswith(ext)]
    assert len(backups) == 1, files
    path = "/srv/backups/qdrant/" + backups[0]
    assert host.file("/srv/backups/qdrant/latest" + ext).linked_to == path
    assert host.file(path).mode == 0o600
    manifest = json.loads(host.file(path + ".manifest.json").content_string)
    assert host.run("sha256sum %s" % path).stdout.split()[0] == manifest["artifact"]["sha256"]
    assert manifest["source"]["kind"] == ("full" if name == "cclite-qdrant-2" else "collections")
    assert {c: v["points_count"] for c, v in manifest["source"]["collections"].items()} == {
        c: len(s["points"]) for c, s in SEED.items()}
    assert KEY not in host.file(path + ".manifest.json").content_string


def test_safety_backup_holds_the_damaged_collection(host):
    name = host.backend.get_hostname()
    safety = host.run("ls /srv/backups/qdrant/safety 2>/dev/null").stdout.split()
    artifacts = [f for f in safety if f.startswith("qdrant_safety_") and not f.endswith(".json")]
    if name == "cclite-qdrant-1":
        assert artifacts == []  # every collection was gone: nothing to save
        return
    assert len(artifacts) == 1, safety
    manifest = json.loads(host.file("/srv/backups/qdrant/safety/%s.manifest.json" % artifacts[0]).content_string)
    assert manifest["kind"] == "safety"
    assert {c: v["points_count"] for c, v in manifest["source"]["collections"].items()} == {"kb": 30, "sessions": 10}
