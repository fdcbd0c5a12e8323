"""Fault injection: slow snapshots, failed and cut downloads, wrong checksums."""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import httpx
import pytest

from .conftest import CheckedClient, RunningServer, ServerFactory
from .snapshot_helpers import download, filled_collection, wait_for_snapshot


@pytest.fixture
def snapshot_name(api: CheckedClient, collection_name: str) -> str:
    filled_collection(api, collection_name, count=5)
    return api.result("POST", f"/collections/{collection_name}/snapshots")["name"]


def test_slow_snapshot_creation(api: CheckedClient, collection_name: str) -> None:
    filled_collection(api, collection_name, count=2)
    assert api.faults(snapshot_delay=2.0)["snapshot_delay"] == 2.0
    started = time.monotonic()
    assert api.post(f"/collections/{collection_name}/snapshots?wait=false").status_code == 202
    assert time.monotonic() - started < 1.0
    assert api.result("GET", f"/collections/{collection_name}/snapshots") == []
    wait_for_snapshot(api, collection_name)
    assert time.monotonic() - started >= 2.0
    started = time.monotonic()
    api.result("POST", f"/collections/{collection_name}/snapshots?wait=true")
    assert time.monotonic() - started >= 2.0


def test_download_http_error_then_recovery(
    api: CheckedClient, collection_name: str, snapshot_name: str, tmp_path: Path
) -> None:
    api.faults(download_http_error=500, download_fault_count=1)
    path = f"/collections/{collection_name}/snapshots/{snapshot_name}"
    failed = api.get(path)
    assert failed.status_code == 500
    assert failed.json()["status"]["error"].startswith("Service internal error:")
    # the fault was used up: the next download works and matches the listed checksum
    listed = api.result("GET", f"/collections/{collection_name}/snapshots")[0]
    assert download(api, path, tmp_path / "ok.snapshot") == listed["checksum"]


def test_download_cut_midway(api: CheckedClient, collection_name: str, snapshot_name: str) -> None:
    api.faults(download_cut_after=100_000)
    received = 0
    with pytest.raises(httpx.RemoteProtocolError):
        with api.http.stream("GET", f"/collections/{collection_name}/snapshots/{snapshot_name}") as response:
            assert response.status_code == 200
            assert int(response.headers["content-length"]) > 100_000
            for chunk in response.iter_raw():
                received += len(chunk)
    assert received == 100_000
    # every download is cut while the fault is on (no count given)
    with pytest.raises(httpx.RemoteProtocolError):
        with api.http.stream("GET", f"/collections/{collection_name}/snapshots/{snapshot_name}") as response:
            for _chunk in response.iter_raw():
                pass
    api.http.delete("/__faults")
    assert api.get(f"/collections/{collection_name}/snapshots/{snapshot_name}").status_code == 200


def test_wrong_checksum_in_list_and_sidecar(
    api: CheckedClient, server: RunningServer, collection_name: str, tmp_path: Path
) -> None:
    filled_collection(api, collection_name, count=3)
    api.faults(wrong_checksum=True)
    created = api.result("POST", f"/collections/{collection_name}/snapshots")
    listed = api.result("GET", f"/collections/{collection_name}/snapshots")[0]
    assert listed["checksum"] == created["checksum"]
    actual = download(api, f"/collections/{collection_name}/snapshots/{created['name']}", tmp_path / "s.snapshot")
    assert actual != listed["checksum"]
    sidecar = server.storage / "snapshots" / collection_name / f"{created['name']}.checksum"
    assert sidecar.read_text() == listed["checksum"]
    assert hashlib.sha256((tmp_path / "s.snapshot").read_bytes()).hexdigest() == actual


def test_faults_from_command_line_and_environment(start_server: ServerFactory) -> None:
    env = {"QDRANT_TEST_FAULTS": json.dumps({"download_cut_after": 10, "wrong_checksum": True})}
    server = start_server("--fault-snapshot-delay", "0.5", "--fault-download-http-error", "503", env=env)
    faults = httpx.get(f"{server.url}/__faults").json()
    assert faults == {
        "snapshot_delay": 0.5,
        "download_http_error": 503,
        "download_cut_after": 10,
        "download_fault_count": None,
        "wrong_checksum": True,
    }
    assert httpx.delete(f"{server.url}/__faults").json()["download_http_error"] is None


def test_invalid_fault_settings_are_rejected(api: CheckedClient) -> None:
    assert api.http.post("/__faults", json={"no_such_fault": 1}).status_code == 400
    assert api.http.post("/__faults", json={"snapshot_delay": "slow"}).status_code == 400
    assert api.http.post("/__faults", json={"snapshot_delay": -1}).status_code == 400
