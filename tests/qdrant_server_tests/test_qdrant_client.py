"""End to end with the official ``qdrant-client`` (REST): the way the backup modules will talk."""

from __future__ import annotations

import time
import uuid
from contextlib import closing
from pathlib import Path
from typing import Any, Dict, Iterator, List

import httpx
import pytest
from qdrant_client import QdrantClient, models

from .conftest import CONTRACT, RunningServer
from .snapshot_helpers import download


@pytest.fixture
def client(server: RunningServer) -> Iterator[QdrantClient]:
    """Official client whose every response is also checked against the OpenAPI document."""
    checked: List[str] = []

    def check_response(response: httpx.Response) -> None:
        response.read()
        request = response.request
        CONTRACT.check(
            request.method,
            request.url.path,
            response.status_code,
            response.headers.get("content-type"),
            response.content,
        )
        checked.append(f"{request.method} {request.url.path}")

    extra: Dict[str, Any] = {"event_hooks": {"response": [check_response]}}
    with closing(QdrantClient(url=server.url, timeout=120, **extra)) as qdrant:
        yield qdrant
    assert checked, "the contract hook saw no response"


def _points(count: int) -> List[models.PointStruct]:
    return [
        models.PointStruct(
            id=i if i % 4 else str(uuid.UUID(int=i + 7)),
            vector={"text": [i * 0.5, 1.0, -0.25], "image": [float(i), 2.0]},
            payload={"title": f"doc {i}", "rank": i, "labels": ["x", "y"][: i % 3], "meta": {"even": i % 2 == 0}},
        )
        for i in range(1, count + 1)
    ]


def _snapshot_of(client: QdrantClient, name: str) -> Dict[Any, models.Record]:
    records, offset = [], None
    while True:
        page, offset = client.scroll(name, limit=6, offset=offset, with_payload=True, with_vectors=True)
        records.extend(page)
        if offset is None:
            return {record.id: record for record in records}


def test_backup_and_restore_round_trip(client: QdrantClient, server: RunningServer, tmp_path: Path) -> None:
    name = f"client_{uuid.uuid4().hex[:8]}"
    client.create_collection(
        name,
        vectors_config={
            "text": models.VectorParams(size=3, distance=models.Distance.DOT),
            "image": models.VectorParams(size=2, distance=models.Distance.EUCLID),
        },
    )
    original = _points(17)
    result = client.upsert(name, points=original, wait=True)
    assert result.status == models.UpdateStatus.COMPLETED
    assert client.count(name, exact=True).count == 17
    before = _snapshot_of(client, name)
    assert len(before) == 17

    described = client.create_snapshot(name, wait=True)
    assert described is not None and described.name.startswith(f"{name}-")
    listed = client.list_snapshots(name)
    assert [s.name for s in listed] == [described.name]
    assert listed[0].checksum == described.checksum and listed[0].size == described.size

    # download through plain HTTP GET (the client has no download call), checksum verified
    local = tmp_path / described.name
    assert download(server.client, f"/collections/{name}/snapshots/{described.name}", local) == described.checksum

    # recover through an upload into a fresh collection
    uploaded = f"{name}_up"
    with local.open("rb") as handle:
        response = client.http.snapshots_api.recover_from_uploaded_snapshot(
            collection_name=uploaded,
            wait=True,
            priority=models.SnapshotPriority.SNAPSHOT,
            checksum=described.checksum,
            snapshot=handle,
        )
    assert response.result is True
    # recover from a location URL into another fresh collection
    located = f"{name}_url"
    url = f"{server.url}/collections/{name}/snapshots/{described.name}"
    assert client.recover_snapshot(
        located, location=url, priority=models.SnapshotPriority.SNAPSHOT, checksum=described.checksum
    )

    for restored in (uploaded, located):
        assert client.count(restored, exact=True).count == 17
        after = _snapshot_of(client, restored)
        assert after.keys() == before.keys()
        for point_id, record in before.items():
            assert after[point_id].payload == record.payload
            assert after[point_id].vector == record.vector
        retrieved = client.retrieve(restored, ids=[original[0].id, original[3].id], with_vectors=True)
        assert {r.id for r in retrieved} == {original[0].id, original[3].id}
        info = client.get_collection(restored)
        assert info.points_count == 17
        assert info.config.params.vectors == client.get_collection(name).config.params.vectors


def test_create_snapshot_without_wait_then_poll(client: QdrantClient) -> None:
    name = f"client_{uuid.uuid4().hex[:8]}"
    client.create_collection(name, vectors_config=models.VectorParams(size=2, distance=models.Distance.COSINE))
    client.upsert(name, points=[models.PointStruct(id=1, vector=[0.6, 0.8])], wait=True)
    assert client.create_snapshot(name, wait=False) is None
    deadline = time.monotonic() + 60
    while not client.list_snapshots(name):
        assert time.monotonic() < deadline, "snapshot never appeared"
        time.sleep(0.2)
    snapshot = client.list_snapshots(name)[0]
    assert snapshot.checksum and snapshot.size > 0
    assert client.delete_snapshot(name, snapshot.name, wait=True) is True
    assert client.list_snapshots(name) == []


def test_full_snapshot_via_client(client: QdrantClient) -> None:
    name = f"client_{uuid.uuid4().hex[:8]}"
    client.create_collection(name, vectors_config=models.VectorParams(size=2, distance=models.Distance.DOT))
    full = client.create_full_snapshot(wait=True)
    assert full is not None and full.name.startswith("full-snapshot-")
    assert full.name in [s.name for s in client.list_full_snapshots()]
    assert client.delete_full_snapshot(full.name, wait=True) is True
