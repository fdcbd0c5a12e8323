"""Collection and full-storage snapshots: create, list, download, delete, recover."""

from __future__ import annotations

import hashlib
import json
import tarfile
import time
from pathlib import Path
from typing import IO

import qdrant_edge as edge

from .conftest import CheckedClient, RunningServer, ServerFactory, all_points, by_id, make_collection
from .snapshot_helpers import (
    FULL_SNAPSHOT_NAME,
    SNAPSHOT_NAME,
    download,
    filled_collection,
    upload,
    wait_for_snapshot,
)


def _member(tar: tarfile.TarFile, name: str) -> IO[bytes]:
    handle = tar.extractfile(name)
    assert handle is not None, name
    return handle


def test_create_list_download_delete(
    api: CheckedClient, server: RunningServer, collection_name: str, tmp_path: Path
) -> None:
    filled_collection(api, collection_name)
    created = api.result("POST", f"/collections/{collection_name}/snapshots?wait=true")
    match = SNAPSHOT_NAME.match(created["name"])
    assert match and match.group("collection") == collection_name
    assert created["size"] > 0 and len(created["checksum"]) == 64
    assert created in api.result("GET", f"/collections/{collection_name}/snapshots")

    on_disk = server.storage / "snapshots" / collection_name / created["name"]
    sidecar = on_disk.with_name(on_disk.name + ".checksum")
    assert sidecar.read_text() == created["checksum"]
    assert hashlib.sha256(on_disk.read_bytes()).hexdigest() == created["checksum"]

    target = tmp_path / created["name"]
    assert download(api, f"/collections/{collection_name}/snapshots/{created['name']}", target) == created["checksum"]

    ranged = api.get(
        f"/collections/{collection_name}/snapshots/{created['name']}", headers={"Range": "bytes=10-19"}, check=False
    )
    assert ranged.status_code == 206
    assert ranged.content == target.read_bytes()[10:20]

    assert api.result("DELETE", f"/collections/{collection_name}/snapshots/{created['name']}") is True
    assert api.result("GET", f"/collections/{collection_name}/snapshots") == []
    assert not on_disk.exists() and not sidecar.exists()
    gone = api.get(f"/collections/{collection_name}/snapshots/{created['name']}")
    assert gone.status_code == 404
    assert gone.json()["status"]["error"] == f"Not found: Snapshot {created['name']} not found"
    assert api.delete(f"/collections/{collection_name}/snapshots/{created['name']}").status_code == 404


def test_snapshot_of_missing_collection_is_404(api: CheckedClient) -> None:
    response = api.post("/collections/nope_nope/snapshots")
    assert response.status_code == 404
    assert response.json()["status"]["error"] == "Not found: Collection `nope_nope` doesn't exist!"


def test_wait_false_returns_202_and_completes_in_background(api: CheckedClient, collection_name: str) -> None:
    filled_collection(api, collection_name)
    api.faults(snapshot_delay=1.5)
    response = api.post(f"/collections/{collection_name}/snapshots", params={"wait": "false"})
    assert response.status_code == 202
    body = response.json()
    assert body["status"] == "accepted" and "result" not in body
    assert api.result("GET", f"/collections/{collection_name}/snapshots") == []
    appeared = wait_for_snapshot(api, collection_name)
    assert SNAPSHOT_NAME.match(appeared["name"]) and len(appeared["checksum"]) == 64


def test_archive_has_qdrant_layout_and_edge_can_load_it(
    api: CheckedClient, server: RunningServer, collection_name: str, tmp_path: Path
) -> None:
    points = filled_collection(api, collection_name, count=12)
    created = api.result("POST", f"/collections/{collection_name}/snapshots")
    archive = server.storage / "snapshots" / collection_name / created["name"]
    with tarfile.open(archive) as tar:
        names = tar.getnames()
        for required in (
            "config.json",
            "version.info",
            "shard_key_mapping.json",
            "payload_index.json",
            "0/shard_config.json",
            "0/replica_state.json",
            "0/wal/first-index",
        ):
            assert required in names, required
        config = json.load(_member(tar, "config.json"))
        assert config["params"]["vectors"] == {"size": 4, "distance": "Dot"} and "uuid" in config
        assert json.load(_member(tar, "0/shard_config.json")) == {"type": "ReplicaSet"}
        segment_tars = [n for n in names if n.startswith("0/segments/") and n.endswith(".tar")]
        assert segment_tars
        with tarfile.open(fileobj=tar.extractfile(segment_tars[0])) as segment:
            inner = segment.getnames()
        assert "snapshot/files/segment.json" in inner and "snapshot/files/version.info" in inner
        # Re-pack shard 0 as a shard snapshot and let Qdrant Edge restore and open it.
        shard_tar = tmp_path / "shard.tar"
        with tarfile.open(shard_tar, "w") as out:
            for member in tar.getmembers():
                if member.name.startswith("0/"):
                    member.name = member.name[2:]
                    out.addfile(member, tar.extractfile(member) if member.isfile() else None)
    edge.EdgeShard.unpack_snapshot(str(shard_tar), str(tmp_path / "shard"))
    shard = edge.EdgeShard.load(str(tmp_path / "shard"))
    try:
        assert shard.count(edge.CountRequest()) == len(points)
        record = shard.retrieve([points[1]["id"]], True, True)[0]
        assert record.payload == points[1]["payload"] and record.vector == points[1]["vector"]
    finally:
        shard.close()


def test_upload_recover_into_new_collection(api: CheckedClient, collection_name: str, tmp_path: Path) -> None:
    points = filled_collection(api, collection_name)
    created = api.result("POST", f"/collections/{collection_name}/snapshots")
    snapshot = tmp_path / created["name"]
    download(api, f"/collections/{collection_name}/snapshots/{created['name']}", snapshot)
    restored = f"{collection_name}_restored"
    response = upload(api, restored, snapshot, priority="snapshot", checksum=created["checksum"])
    assert response.status_code == 200 and response.json()["result"] is True
    assert by_id(all_points(api, restored)) == by_id(points)
    info = api.result("GET", f"/collections/{restored}")
    assert info["points_count"] == len(points)
    assert info["config"]["params"]["vectors"] == {"size": 4, "distance": "Dot"}
    # the uploaded file stays on the server, listed without a checksum sidecar
    assert {"name": created["name"], "checksum": None}.items() <= api.result(
        "GET", f"/collections/{restored}/snapshots"
    )[0].items()
    # the recovered collection accepts new writes that overwrite restored points
    api.result(
        "PUT",
        f"/collections/{restored}/points?wait=true",
        json={"points": [{"id": 2, "vector": [9, 9, 9, 9], "payload": {"new": 1}}]},
    )
    assert api.result("GET", f"/collections/{restored}/points/2") == {
        "id": 2,
        "payload": {"new": 1},
        "vector": [9.0, 9.0, 9.0, 9.0],
    }


def test_recovery_without_wait_is_accepted_then_done(
    api: CheckedClient, server: RunningServer, collection_name: str
) -> None:
    points = filled_collection(api, collection_name, count=4)
    created = api.result("POST", f"/collections/{collection_name}/snapshots")
    snapshot = server.storage / "snapshots" / collection_name / created["name"]
    uploaded, located = f"{collection_name}_up", f"{collection_name}_loc"
    response = upload(api, uploaded, snapshot, wait="false", priority="snapshot")
    assert response.status_code == 202 and response.json()["status"] == "accepted"
    body = {"location": snapshot.as_uri(), "priority": "snapshot"}
    accepted = api.put(f"/collections/{located}/snapshots/recover", params={"wait": "false"}, json=body)
    assert accepted.status_code == 202
    for name in (uploaded, located):
        deadline = time.monotonic() + 60
        while api.result("GET", f"/collections/{name}/exists") != {"exists": True}:
            assert time.monotonic() < deadline, f"{name} never recovered"
            time.sleep(0.2)
        assert by_id(all_points(api, name)) == by_id(points)
    # a wrong checksum is still refused at once, before the 202
    refused = upload(api, f"{collection_name}_no", snapshot, wait="false", checksum="1" * 64)
    assert refused.status_code == 400


def test_upload_with_wrong_checksum_is_rejected(
    api: CheckedClient, server: RunningServer, collection_name: str
) -> None:
    filled_collection(api, collection_name, count=3)
    created = api.result("POST", f"/collections/{collection_name}/snapshots")
    snapshot = server.storage / "snapshots" / collection_name / created["name"]
    wrong = "0" * 64
    target = f"{collection_name}_never"
    response = upload(api, target, snapshot, priority="snapshot", checksum=wrong)
    assert response.status_code == 400
    assert response.json()["status"]["error"] == f"Checksum mismatch: expected {created['checksum']}, actual {wrong}"
    assert api.result("GET", f"/collections/{target}/exists") == {"exists": False}
    malformed = upload(api, target, snapshot, checksum="abc")
    assert malformed.status_code == 422


def test_recover_from_location_file_and_http(api: CheckedClient, server: RunningServer, collection_name: str) -> None:
    points = filled_collection(api, collection_name, count=8)
    created = api.result("POST", f"/collections/{collection_name}/snapshots")
    path = server.storage / "snapshots" / collection_name / created["name"]
    from_file = f"{collection_name}_file"
    body = {"location": path.as_uri(), "priority": "snapshot", "checksum": created["checksum"]}
    assert api.result("PUT", f"/collections/{from_file}/snapshots/recover", json=body) is True
    assert by_id(all_points(api, from_file)) == by_id(points)
    from_http = f"{collection_name}_http"
    url = f"{server.url}/collections/{collection_name}/snapshots/{created['name']}"
    assert (
        api.result("PUT", f"/collections/{from_http}/snapshots/recover", json={"location": url, "priority": "no_sync"})
        is True
    )
    assert by_id(all_points(api, from_http)) == by_id(points)
    mismatch = api.put(f"/collections/{from_http}/snapshots/recover", json={"location": url, "checksum": "f" * 64})
    assert mismatch.status_code == 400
    assert mismatch.json()["status"]["error"] == f"Checksum mismatch: expected {created['checksum']}, actual {'f' * 64}"
    missing = api.put(
        f"/collections/{from_http}/snapshots/recover", json={"location": "file:///nonexistent/x.snapshot"}
    )
    assert missing.status_code == 400
    assert missing.json()["status"]["error"] == 'Bad request: Snapshot file "/nonexistent/x.snapshot" does not exist'
    bad_priority = api.put(f"/collections/{from_http}/snapshots/recover", json={"location": url, "priority": "newest"})
    assert bad_priority.status_code == 400


def test_recover_into_existing_collection_keeps_its_config(
    api: CheckedClient, server: RunningServer, collection_name: str
) -> None:
    points = filled_collection(api, collection_name, count=10)
    created = api.result("POST", f"/collections/{collection_name}/snapshots")
    path = server.storage / "snapshots" / collection_name / created["name"]
    target = f"{collection_name}_existing"
    make_collection(api, target, hnsw_config={"m": 48}, optimizers_config={"indexing_threshold": 1234})
    api.result("PUT", f"/collections/{target}/points?wait=true", json={"points": [{"id": 999, "vector": [1, 1, 1, 1]}]})
    before = api.result("GET", f"/collections/{target}")["config"]
    assert (
        api.result(
            "PUT", f"/collections/{target}/snapshots/recover", json={"location": path.as_uri(), "priority": "snapshot"}
        )
        is True
    )
    assert by_id(all_points(api, target)) == by_id(points)  # point 999 replaced by the snapshot's data
    assert api.result("GET", f"/collections/{target}")["config"] == before


def test_recover_with_incompatible_vectors_is_rejected(
    api: CheckedClient, server: RunningServer, collection_name: str
) -> None:
    filled_collection(api, collection_name, count=3)
    created = api.result("POST", f"/collections/{collection_name}/snapshots")
    path = server.storage / "snapshots" / collection_name / created["name"]
    target = f"{collection_name}_other"
    make_collection(api, target, vectors={"size": 8, "distance": "Cosine"})
    response = api.put(f"/collections/{target}/snapshots/recover", json={"location": path.as_uri()})
    assert response.status_code == 400
    assert response.json()["status"]["error"].startswith(
        "Wrong input: Snapshot is not compatible with existing collection"
    )
    assert api.result("GET", f"/collections/{target}")["config"]["params"]["vectors"]["size"] == 8


def test_upload_of_non_snapshot_fails(api: CheckedClient, collection_name: str, tmp_path: Path) -> None:
    junk = tmp_path / "junk.snapshot"
    junk.write_bytes(b"this is not a tar archive" * 100)
    response = upload(api, collection_name, junk)
    assert response.status_code == 500
    assert response.json()["status"]["error"] == "Service internal error: File IO error: failed to iterate over archive"
    assert api.result("GET", f"/collections/{collection_name}/exists") == {"exists": False}


def test_full_snapshot_create_list_download_delete(start_server: ServerFactory, tmp_path: Path) -> None:
    server = start_server()
    api = server.client
    filled_collection(api, "alpha", count=3)
    filled_collection(api, "beta", count=2)
    api.result(
        "POST",
        "/collections/aliases",
        json={"actions": [{"create_alias": {"collection_name": "beta", "alias_name": "b"}}]},
    )
    created = api.result("POST", "/snapshots")
    assert FULL_SNAPSHOT_NAME.match(created["name"])
    assert created in api.result("GET", "/snapshots")
    target = tmp_path / created["name"]
    assert download(api, f"/snapshots/{created['name']}", target) == created["checksum"]
    with tarfile.open(target) as tar:
        config = json.load(_member(tar, "config.json"))
        assert set(config["collections_mapping"]) == {"alpha", "beta"}
        assert config["collections_aliases"] == {"b": "beta"}
        assert set(config["collections_mapping"].values()) <= set(tar.getnames())
    # the per-collection snapshots made on the way stay, as in Qdrant
    assert len(api.result("GET", "/collections/alpha/snapshots")) == 1
    assert api.result("DELETE", f"/snapshots/{created['name']}") is True
    assert api.result("GET", "/snapshots") == []
    accepted = api.post("/snapshots", params={"wait": "false"})
    assert accepted.status_code == 202


def test_storage_survives_restart(start_server: ServerFactory, tmp_path: Path) -> None:
    first = start_server(storage=tmp_path / "kept")
    points = filled_collection(first.client, "kept", count=9)
    created = first.client.result("POST", "/collections/kept/snapshots")
    first.stop()
    second = start_server(storage=tmp_path / "kept")
    assert by_id(all_points(second.client, "kept")) == by_id(points)
    assert created in second.client.result("GET", "/collections/kept/snapshots")
