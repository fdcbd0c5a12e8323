# -*- coding: utf-8 -*-
# Copyright (c) cclite.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The Qdrant point sample of a backup and the drill that compares it, against two instances of
the project's Qdrant-compatible test server (tests/qdrant_server, Qdrant Edge storage): a backup
records ids and sha256 of vectors and payloads, a drill into a dedicated drill server compares
the restored points with them, a sample that does not match fails naming collection, point and
what differs, and a manifest without a sample says the values were not compared."""

from __future__ import annotations

import importlib.util
import json
import os
import select
import subprocess
import sys
import typing as t
import urllib.request

import pytest

from ansible_collections.cclite.backup.plugins.module_utils._core import _drill, _manifest
from ansible_collections.cclite.backup.plugins.module_utils._core._artifact import Compression
from ansible_collections.cclite.backup.plugins.module_utils._core._restore import RestoreSpec
from ansible_collections.cclite.backup.plugins.module_utils._engines.qdrant import _client as qd
from ansible_collections.cclite.backup.plugins.module_utils._engines.qdrant import _drill as qd_drill
from ansible_collections.cclite.backup.plugins.module_utils._engines.qdrant import _engine as ops

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "..", ".."))  # holds tests/qdrant_server
API_KEY = "unit-drill-key-5"
POINTS = 12


class Server:
    """One test server on a free port, in its own storage directory."""

    def __init__(self, storage: str) -> None:
        self.process = subprocess.Popen(  # pylint: disable=consider-using-with
            [sys.executable, "-m", "tests.qdrant_server", "--host", "127.0.0.1", "--port", "0", "--storage", storage,
             "--api-key", API_KEY, "--quiet"],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        assert self.process.stdout is not None
        ready, _w, _x = select.select([self.process.stdout], [], [], 60)
        line = self.process.stdout.readline() if ready else ""
        if "listening on " not in line:
            self.stop()
            raise AssertionError("the Qdrant test server did not start: %r" % line)
        self.url = line.split("listening on ", 1)[1].split()[0]
        self.conn = qd.Connection(url=self.url, api_key=API_KEY, timeout=30, snapshot_timeout=60)

    def call(self, method: str, path: str, body: t.Any = None) -> t.Any:
        request = urllib.request.Request(self.url + path, method=method, data=json.dumps(body).encode() if body is not None else None,
                                         headers={"api-key": API_KEY, "Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())["result"]

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@pytest.fixture(name="servers")
def servers_fixture(tmp_path) -> t.Iterator[tuple[Server, Server]]:
    if importlib.util.find_spec("qdrant_edge") is None:
        if os.environ.get("CI"):
            pytest.fail("the Qdrant test server needs qdrant-edge-py in this Python (make venv)")
        pytest.skip("the Qdrant test server needs qdrant-edge-py in this Python")
    started: list[Server] = []
    try:
        for name in ("production", "drill"):
            started.append(Server(str(tmp_path / name)))
        yield started[0], started[1]
    finally:
        for server in started:
            server.stop()


def fill(server: Server) -> None:
    server.call("PUT", "/collections/kb", {"vectors": {"size": 4, "distance": "Cosine"}})
    server.call("PUT", "/collections/kb/points?wait=true", {"points": [
        {"id": i, "vector": [1.0 + i, 0.5, 0.25, 0.125], "payload": {"doc": "article %d" % i, "tags": ["a", "b"][: i % 3]}}
        for i in range(1, POINTS + 1)]})
    server.call("PUT", "/collections/images", {"vectors": {"clip": {"size": 2, "distance": "Dot"}, "text": {"size": 3, "distance": "Dot"}}})
    server.call("PUT", "/collections/images/points?wait=true", {"points": [
        {"id": "00000000-0000-0000-0000-00000000000%d" % i, "vector": {"clip": [float(i), 2.0], "text": [0.5, float(i), 1.0]},
         "payload": {"file": "img%d.png" % i}} for i in range(1, 6)]})


def drill(production: Server, target: Server, root: str) -> dict[str, t.Any]:
    spec = RestoreSpec(ops.catalog(root), "latest", True)
    request = ops.RestoreRequest(production.conn, spec)
    engine = qd_drill.Drill(request, kept=target.conn)
    try:
        return _drill.run_drill("qdrant", spec, engine, _drill.KeptTarget("the test drill server"), 30)
    finally:
        assert qd.Client(target.conn).collections() == []  # what the drill restored there is removed, also on failure


def sidecar(root: str) -> str:
    return os.path.join(ops.catalog(root).directory, os.readlink(os.path.join(ops.catalog(root).directory, "latest.tar.gz"))) + ".manifest.json"


def test_a_backup_records_a_point_sample_and_a_drill_compares_the_restored_values(servers, tmp_path):
    production, target = servers
    fill(production)
    root = str(tmp_path / "backups")
    out = ops.backup(ops.BackupRequest(production.conn, ops.backup_spec(ops.catalog(root), Compression("gzip", 6, 1))), False)
    assert out["notes"] == []
    collections = _manifest.read(out["artifact"]["path"])["source"]["collections"]
    kb = collections["kb"]["sample"]
    assert [p["id"] for p in kb] == [1, 2, 3]  # the first points in scroll order, a few only
    point = production.call("POST", "/collections/kb/points", {"ids": [2], "with_payload": True, "with_vector": True})[0]
    assert kb[1] == {"id": 2, "vector": qd.canonical_sha256(point["vector"]), "payload": qd.canonical_sha256({"doc": "article 2", "tags": ["a", "b"]})}
    assert [p["id"] for p in collections["images"]["sample"]] == ["00000000-0000-0000-0000-00000000000%d" % i for i in (1, 2, 3)]

    result = drill(production, target, root)
    assert result["drill"]["passed"] and result["drill"]["compared"]["sample"] == {"points": 6}
    assert "sample compared: 6 points" in result["msg"]

    # a restore whose values differ from the backup's: here the recorded sample is rewritten
    manifest_path = sidecar(root)
    with open(manifest_path, encoding="utf-8") as handle:
        manifest = json.load(handle)
    original = json.dumps(manifest)
    manifest["source"]["collections"]["kb"]["sample"][1]["payload"] = qd.canonical_sha256({"doc": "article 2 (edited)"})
    manifest["source"]["collections"]["images"]["sample"][0]["vector"] = qd.canonical_sha256({"clip": [0.0, 0.0]})
    manifest["source"]["collections"]["images"]["sample"][2]["id"] = "00000000-0000-0000-0000-000000000009"
    with open(manifest_path, "w", encoding="utf-8") as handle:
        json.dump(manifest, handle)
    with pytest.raises(_drill.DrillError) as exc:
        drill(production, target, root)
    assert "the qdrant drill failed" in exc.value.msg
    assert "collection kb: point 2: its payload differs from the backup's" in exc.value.msg
    assert 'collection images: point "00000000-0000-0000-0000-000000000001": its vector differs from the backup\'s' in exc.value.msg
    assert 'collection images: point "00000000-0000-0000-0000-000000000009" of the backup\'s sample is missing after the restore' in exc.value.msg
    assert exc.value.details["drill"]["ran"] and not exc.value.details["drill"]["passed"]
    assert len(exc.value.details["drill"]["problems"]) == 3

    # a manifest made before samples were recorded: the values are not compared, and the drill says so
    manifest = json.loads(original)
    for entry in manifest["source"]["collections"].values():
        del entry["sample"]
    with open(manifest_path, "w", encoding="utf-8") as handle:
        json.dump(manifest, handle)
    result = drill(production, target, root)
    sample = result["drill"]["compared"]["sample"]
    assert sample["points"] == 0 and sample["points_read"] == 6
    assert sample["note"].startswith("values not compared for images, kb: the manifest holds no point sample")
    assert "values not compared" in result["msg"]


def test_a_point_changed_during_the_backup_is_left_out_of_the_sample(servers, tmp_path):
    production, _target = servers
    fill(production)
    client = qd.Client(production.conn)
    producer = ops.BundleProducer(client, ops.survey(client, ["kb"], False), str(tmp_path))
    entry = {"name": "kb"}
    before = producer._sample("kb")  # pylint: disable=protected-access
    production.call("PUT", "/collections/kb/points?wait=true", {"points": [{"id": 2, "vector": [9.0, 9.0, 9.0, 9.0], "payload": {}}]})
    producer._keep_sample(entry, before)  # pylint: disable=protected-access
    assert [p["id"] for p in entry["sample"]] == [1, 3]
    assert producer.notes == ["collection kb: 1 sampled point(s) changed during the backup and were left out of the point sample"]
