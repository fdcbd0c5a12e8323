# -*- coding: utf-8 -*-
# Copyright (c) cclite.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The Qdrant backup and restore flows against a stand-in server at the HTTP boundary, with
real gzip processes: what is written, what is left on the server, and what a failure leaves."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import tarfile

import pytest

from ansible_collections.cclite.backup.plugins.module_utils._core import _manifest

from ansible_collections.cclite.backup.plugins.module_utils._engines.qdrant import _client as qd
from ansible_collections.cclite.backup.plugins.module_utils._engines.qdrant import _engine as ops
from ansible_collections.cclite.backup.plugins.module_utils._core._artifact import Compression
from ansible_collections.cclite.backup.plugins.module_utils._core._restore import RestoreSpec
from ansible_collections.cclite.backup.plugins.module_utils._core._errors import BackupError, ConfigError, RestoreError, VerifyError
from ansible_collections.cclite.backup.plugins.module_utils._core._verify import Rules
from ansible_collections.cclite.backup.tests.unit.plugins.module_utils.qdrant_fake import FakeQdrant

API_KEY = "unit-Qdrant-key-77"


@pytest.fixture
def server():
    fake = FakeQdrant(api_key=API_KEY)
    fake.add("docs", 5, aliases=["docs_live"])
    fake.add("faq", 12)
    yield fake
    fake.stop()


@pytest.fixture
def conn(server):
    return qd.Connection(url=server.url, api_key=API_KEY, timeout=10, snapshot_timeout=10)


def make(conn, root, collections=(), full=False):
    spec = ops.backup_spec(ops.catalog(str(root)), Compression("gzip", 6, 1), full=full)
    return ops.backup(ops.BackupRequest(conn, spec, collections, full), False)


def members(path):
    with gzip.open(path) as raw, tarfile.open(fileobj=raw, mode="r|") as tar:
        out = {}
        for member in tar:
            data = tar.extractfile(member).read()
            out[member.name] = data
        return out


def leftovers(root):
    return sorted(n for n in os.listdir(os.path.join(str(root), "qdrant")) if n.endswith(".partial"))


def test_backup_bundles_every_collection_and_cleans_the_server(server, conn, tmp_path):
    out = make(conn, tmp_path)
    bundle = members(out["artifact"]["path"])
    assert sorted(bundle) == ["collections/docs.snapshot", "collections/faq.snapshot", "manifest.json"]
    assert list(bundle)[-1] == "manifest.json"
    manifest = json.loads(bundle["manifest.json"])
    docs = manifest["collections"][0]
    assert manifest["kind"] == "collections"
    assert manifest["server"] == {"title": "qdrant - vector search engine", "version": "1.19.2", "commit": "0", "url": server.url}
    assert docs["name"] == "docs" and docs["points_count"] == 5 and docs["aliases"] == ["docs_live"]
    assert docs["vectors"] == {"size": 4, "distance": "Dot"} and docs["snapshot"].startswith("docs-1-")
    assert docs["sha256"] == hashlib.sha256(bundle["collections/docs.snapshot"]).hexdigest()
    assert out["source"]["collections"] == {"docs": {"points_count": 5, "aliases": ["docs_live"], "size": docs["size"]},
                                            "faq": {"points_count": 12, "aliases": [], "size": manifest["collections"][1]["size"]}}
    assert out["source"]["total_points"] == 17 and out["artifact"]["versions"] == {"server": "1.19.2"}
    assert server.snapshots == {"docs": {}, "faq": {}}
    assert leftovers(tmp_path) == [] and out["latest"].endswith("/qdrant/latest.tar.gz")
    sidecar = json.loads(open(out["manifest"]).read())
    assert sidecar["store"] == "qdrant" and sidecar["format"] == "qdrant-snapshots"
    assert API_KEY not in json.dumps(out) + json.dumps(sidecar) + bundle["manifest.json"].decode()


def test_check_mode_predicts_without_a_snapshot(server, conn, tmp_path):
    spec = ops.backup_spec(ops.catalog(str(tmp_path)), Compression())
    out = ops.backup(ops.BackupRequest(conn, spec, ["faq"]), True)
    assert out["artifact"]["path"].startswith(str(tmp_path / "qdrant" / "qdrant_backup_")) and out["artifact"]["size"] is None
    assert out["source"]["collections"] == {"faq": {"points_count": 12, "aliases": []}}
    assert not [r for r in server.requests if r[0] == "POST"] and not os.path.exists(tmp_path / "qdrant")


def test_collections_must_exist_and_not_be_aliases(server, conn, tmp_path):
    with pytest.raises(ConfigError, match="collection nope does not exist on Qdrant at .*; it has: docs, faq"):
        make(conn, tmp_path, ["nope"])
    with pytest.raises(ConfigError, match="docs_live is an alias of collection docs"):
        make(conn, tmp_path, ["docs_live"])
    with pytest.raises(ConfigError, match="leave collections empty"):
        make(conn, tmp_path, ["docs"], full=True)
    server.collections.clear()
    with pytest.raises(BackupError, match="has no collections: there is nothing to back up"):
        make(conn, tmp_path)


@pytest.mark.parametrize("fault,message", [
    ("wrong_checksum", "but the server's checksum is"),
    ("cut_after", "the connection was cut"),
])
def test_a_bad_download_leaves_no_artifact_and_no_server_snapshot(server, conn, tmp_path, fault, message):
    first = make(conn, tmp_path)
    setattr(server, fault, True if fault == "wrong_checksum" else 2000)
    with pytest.raises(BackupError, match=message):
        make(conn, tmp_path)
    names = sorted(os.listdir(tmp_path / "qdrant"))
    assert [n for n in names if n.startswith("qdrant_backup_") and n.endswith(".gz")] == [first["artifact"]["name"]]
    assert os.readlink(tmp_path / "qdrant" / "latest.tar.gz") == first["artifact"]["name"]
    assert leftovers(tmp_path) == [] and server.snapshots == {"docs": {}, "faq": {}}


def test_a_snapshot_timeout_leaves_no_artifact(server, tmp_path):
    server.snapshot_delay = 2
    conn = qd.Connection(url=server.url, api_key=API_KEY, snapshot_timeout=1)
    with pytest.raises(BackupError, match="did not finish the snapshot of collection docs within 1 seconds"):
        make(conn, tmp_path)
    assert [n for n in os.listdir(tmp_path / "qdrant") if not n.startswith(".cclite")] == []


def test_a_dying_compressor_stops_the_source_and_cleans_up(server, conn, tmp_path, fake_program):
    fake_program("gzip", "head -c 100 >/dev/null; echo 'gzip: disk quota exceeded' >&2; exit 1")
    fake_program("pigz", "exit 1")
    with pytest.raises(BackupError, match="gzip failed with exit status 1: gzip: disk quota exceeded"):
        make(conn, tmp_path)
    assert leftovers(tmp_path) == [] and server.snapshots == {"docs": {}, "faq": {}}
    assert not [n for n in os.listdir(tmp_path / "qdrant") if n.startswith("qdrant_backup_")]


def test_full_snapshot_bundle_and_its_inner_checksums(server, conn, tmp_path):
    out = make(conn, tmp_path, full=True)
    bundle = members(out["artifact"]["path"])
    manifest = json.loads(bundle["manifest.json"])
    full_member = manifest["full_snapshot"]["member"]
    assert sorted(bundle) == sorted([full_member, "manifest.json"]) and full_member.startswith("full/full-snapshot-")
    inner = tarfile.open(fileobj=io.BytesIO(bundle[full_member]))
    docs = manifest["collections"][0]
    assert docs["container"] == full_member and docs["aliases"] == ["docs_live"]
    assert docs["sha256"] == hashlib.sha256(inner.extractfile(docs["member"]).read()).hexdigest()
    assert server.snapshots == {None: {}, "docs": {}, "faq": {}}
    assert ops.info(ops.catalog(str(tmp_path)), Rules(), "full")["healthy"]


def test_info_full_finds_a_damaged_bundle(server, conn, tmp_path):
    out = make(conn, tmp_path)
    path = out["artifact"]["path"]
    content = gzip.open(path).read()
    with open(path, "wb") as handle:  # same length, one byte of a snapshot changed, recompressed
        index = content.index(b"faq:12")
        handle.write(gzip.compress(content[:index] + b"faq:13" + content[index + 6:]))
    os.unlink(out["manifest"])  # a legacy file (no manifest, unknown to the journal): only the
    os.unlink(os.path.join(os.path.dirname(out["manifest"]), _manifest.JOURNAL))  # content check can catch it
    result = ops.info(ops.catalog(str(tmp_path)), Rules(min_size_bytes=10), "full")
    assert not result["healthy"]
    assert "snapshot collections/faq.snapshot has sha256" in result["problems"][0]


def restore(conn, root, name="latest", confirm=True, **kwargs):
    collections = kwargs.pop("collections", ())
    request = ops.RestoreRequest(conn, RestoreSpec(ops.catalog(str(root)), name, confirm, **kwargs), collections)
    return ops.Restore(request).run(False)


def test_restore_replaces_data_recreates_aliases_and_removes_uploads(server, conn, tmp_path):
    first = make(conn, tmp_path)
    server.collections["docs"] = 1
    server.aliases["docs_live"] = "faq"
    out = restore(conn, tmp_path, first["artifact"]["name"])
    assert server.collections == {"docs": 5, "faq": 12} and server.aliases == {"docs_live": "docs"}
    assert [u["query"]["priority"] for u in server.uploads] == ["snapshot", "snapshot"]
    assert [u["filename"] for u in server.uploads] == [c["snapshot"] for c in json.loads(members(first["artifact"]["path"])["manifest.json"])["collections"]]
    assert server.snapshots == {"docs": {}, "faq": {}}
    assert [c["uploaded_snapshot_removed"] for c in out["collections"]] == [True, True]
    assert [(c["name"], c["points_count"]) for c in out["collections"]] == [("docs", 5), ("faq", 12)]
    safety = out["safety_backup"]
    assert safety["path"].startswith(str(tmp_path / "qdrant" / "safety" / "qdrant_safety_"))
    sidecar = json.loads(open(safety["path"] + ".manifest.json").read())
    assert sidecar["kind"] == "safety" and sidecar["source"]["collections"]["docs"]["points_count"] == 1
    assert os.readlink(tmp_path / "qdrant" / "latest.tar.gz") == first["artifact"]["name"]
    assert "to roll back, restore safety/" in out["msg"]
    rolled = restore(conn, tmp_path, "safety/" + safety["name"], safety_backup=False)
    assert server.collections["docs"] == 1 and rolled["safety_backup"] is None


def test_restore_just_some_collections(server, conn, tmp_path):
    make(conn, tmp_path)
    server.collections.update(docs=0, faq=0)
    out = restore(conn, tmp_path, collections=["faq"])
    assert server.collections == {"docs": 0, "faq": 12} and [c["name"] for c in out["collections"]] == ["faq"]
    with pytest.raises(ConfigError, match="the backup has no collection other; it has: docs, faq"):
        restore(conn, tmp_path, collections=["other"])


def test_restore_into_a_server_without_the_collections_needs_no_safety_backup(server, conn, tmp_path):
    make(conn, tmp_path, full=True)
    server.collections.clear()
    server.aliases.clear()
    out = restore(conn, tmp_path)
    assert server.collections == {"docs": 5, "faq": 12} and server.aliases == {"docs_live": "docs"}
    assert out["safety_backup"] is None


def test_restore_needs_confirmation_and_changes_nothing_without(server, conn, tmp_path):
    make(conn, tmp_path)
    with pytest.raises(RestoreError, match="without confirmation: set confirm: true"):
        restore(conn, tmp_path, confirm=False)
    assert server.uploads == [] and not os.path.exists(tmp_path / "qdrant" / "safety")


def test_check_mode_reads_the_file_and_changes_nothing(server, conn, tmp_path):
    make(conn, tmp_path)
    out = ops.Restore(ops.RestoreRequest(conn, RestoreSpec(ops.catalog(str(tmp_path)), "latest", False))).run(True)
    assert "would restore docs, faq" in out["msg"] and "would replace docs, faq" in out["msg"]
    assert server.uploads == [] and out["collections"] is None


@pytest.mark.parametrize("version,message", [("1.21.0", "more than one minor version newer"), ("1.18.4", "older than 1.19.2")])
def test_restore_refuses_an_incompatible_server(conn, tmp_path, version, message):
    make(conn, tmp_path)
    other = FakeQdrant(api_key=API_KEY, version=version)
    try:
        with pytest.raises(RestoreError, match="refusing to restore onto Qdrant at .*nothing was changed: .*" + message):
            restore(qd.Connection(url=other.url, api_key=API_KEY), tmp_path)
        assert other.uploads == []
    finally:
        other.stop()


def test_restore_refuses_a_damaged_file_before_any_change(server, conn, tmp_path):
    out = make(conn, tmp_path)
    with open(out["artifact"]["path"], "r+b") as handle:
        handle.seek(out["artifact"]["size"] // 2)
        handle.write(b"\0" * 64)
    with pytest.raises(VerifyError, match="refusing to restore .* nothing was changed"):
        restore(conn, tmp_path)
    assert server.uploads == []


def test_a_failed_upload_names_what_was_restored_and_the_rollback(server, conn, tmp_path):
    make(conn, tmp_path)
    server.collections.update(docs=0, faq=0)
    server.reject_upload = "faq"
    with pytest.raises(RestoreError) as caught:
        restore(conn, tmp_path)
    message = caught.value.msg
    assert "POST /collections/faq/snapshots/upload answered 400: Wrong input: Snapshot is not compatible" in message
    assert "Restored so far: docs" in message and "to roll back, restore safety/qdrant_safety_" in message
    assert server.collections == {"docs": 5, "faq": 0}
    assert server.snapshots == {"docs": {}, "faq": {}}  # the rejected upload was deleted from the server too
