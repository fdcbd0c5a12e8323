"""Helpers shared by the snapshot tests."""

from __future__ import annotations

import hashlib
import re
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

from .conftest import CheckedClient, make_collection, sample_points

SNAPSHOT_NAME = re.compile(r"^(?P<collection>.+)-(?P<peer>\d+)-\d{4}-\d{2}-\d{2}-\d{2}-\d{2}-\d{2}\.snapshot$")
FULL_SNAPSHOT_NAME = re.compile(r"^full-snapshot-\d{4}-\d{2}-\d{2}-\d{2}-\d{2}-\d{2}\.snapshot$")


def filled_collection(api: CheckedClient, name: str, count: int = 25, **config: Any) -> List[Dict[str, Any]]:
    """Create ``name`` and upsert ``count`` sample points; returns the points."""
    make_collection(api, name, **config)
    points = sample_points(count)
    api.result("PUT", f"/collections/{name}/points?wait=true", json={"points": points})
    return points


def download(api: CheckedClient, path: str, target: Path) -> str:
    """Stream a snapshot download to ``target``; returns its sha256."""
    digest = hashlib.sha256()
    with api.http.stream("GET", path) as response:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"] == "application/octet-stream"
        api.check("GET", path, response)
        expected = int(response.headers["content-length"])
        with target.open("wb") as out:
            for chunk in response.iter_bytes(1024 * 1024):
                out.write(chunk)
                digest.update(chunk)
    assert target.stat().st_size == expected
    return digest.hexdigest()


def upload(api: CheckedClient, collection: str, snapshot: Path, **params: Any) -> Any:
    """``POST /collections/{collection}/snapshots/upload`` as multipart form field ``snapshot``."""
    with snapshot.open("rb") as handle:
        return api.post(
            f"/collections/{collection}/snapshots/upload",
            params=params,
            files={"snapshot": (snapshot.name, handle, "application/octet-stream")},
        )


def wait_for_snapshot(
    api: CheckedClient, collection: str, timeout: float = 60, known: Optional[set] = None
) -> Dict[str, Any]:
    """Poll the snapshot list until a snapshot not in ``known`` appears."""
    known = known or set()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for snapshot in api.result("GET", f"/collections/{collection}/snapshots"):
            if snapshot["name"] not in known:
                return snapshot
        time.sleep(0.2)
    raise AssertionError(f"no new snapshot of {collection} after {timeout}s")
