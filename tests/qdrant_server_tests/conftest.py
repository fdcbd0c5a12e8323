"""Fixtures: the test server started as a subprocess with its documented command, and an HTTP
client that checks every response against the vendored Qdrant OpenAPI document."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional

import httpx
import pytest

from .openapi_contract import OpenApiContract

REPO_ROOT = Path(__file__).resolve().parents[2]
CONTRACT = OpenApiContract()


def free_port() -> int:
    """A TCP port that was free a moment ago on 127.0.0.1."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class CheckedClient:
    """``httpx.Client`` wrapper: every response to a Qdrant path is checked against the contract."""

    def __init__(self, base_url: str, api_key: Optional[str] = None) -> None:
        headers = {"api-key": api_key} if api_key else {}
        self.http = httpx.Client(base_url=base_url, headers=headers, timeout=120)
        self.checked = 0

    def request(self, method: str, path: str, check: bool = True, **kwargs: Any) -> httpx.Response:
        response = self.http.request(method, path, **kwargs)
        if check and not path.startswith("/__faults"):
            self.check(method, path, response)
        return response

    def check(self, method: str, path: str, response: httpx.Response) -> None:
        content_type = response.headers.get("content-type")
        if response.status_code in (401, 403) and (content_type or "").startswith("text/plain"):
            # Qdrant's auth middleware answers in plain text, outside the documented envelope.
            CONTRACT.template_for(method, path.split("?")[0])
            return
        # A streamed download is checked for status and content type only (body not read here).
        try:
            body = response.content
        except httpx.ResponseNotRead:
            body = b""
        CONTRACT.check(method, path.split("?")[0], response.status_code, content_type, body)
        self.checked += 1

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("POST", path, **kwargs)

    def put(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("PUT", path, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("DELETE", path, **kwargs)

    def result(self, method: str, path: str, **kwargs: Any) -> Any:
        """Call, assert ``200 status=ok``, return ``result``."""
        response = self.request(method, path, **kwargs)
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["status"] == "ok", body
        assert isinstance(body["time"], float)
        return body["result"]

    def faults(self, **settings: Any) -> Dict[str, Any]:
        response = self.http.post("/__faults", json=settings)
        assert response.status_code == 200, response.text
        return response.json()

    def close(self) -> None:
        self.http.close()


class RunningServer:
    """A server subprocess started with ``python -m tests.qdrant_server``."""

    def __init__(
        self, storage: Path, args: List[str], env: Optional[Dict[str, str]] = None, api_key: Optional[str] = None
    ) -> None:
        self.storage = storage
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.api_key = api_key
        self.command = [
            sys.executable,
            "-m",
            "tests.qdrant_server",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--storage",
            str(storage),
            "--quiet",
        ] + args
        self.log = storage.parent / f"{storage.name}.log"
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                self.command,
                cwd=REPO_ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, **(env or {})},
            )
        self._wait_ready()
        self.client = CheckedClient(self.url, api_key)

    def _wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited with {self.process.returncode}:\n{self.log.read_text()}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.1)
        raise RuntimeError(f"server not ready after {timeout}s:\n{self.log.read_text()}")

    def stop(self, remove_storage: bool = False) -> None:
        """Terminate the process; optionally delete its storage (snapshots are ~100 MB each)."""
        self.client.close()
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if remove_storage:
            shutil.rmtree(self.storage, ignore_errors=True)


ServerFactory = Callable[..., RunningServer]


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator[ServerFactory]:
    """Factory for servers owned by one test (own storage, stopped at teardown)."""
    started: List[RunningServer] = []

    def factory(
        *args: str, env: Optional[Dict[str, str]] = None, api_key: Optional[str] = None, storage: Optional[Path] = None
    ) -> RunningServer:
        server = RunningServer(storage or tmp_path / f"storage{len(started)}", list(args), env, api_key)
        started.append(server)
        return server

    yield factory
    for server in started:
        server.stop(remove_storage=True)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """One server shared by the tests of a module (no API key, no faults)."""
    running = RunningServer(tmp_path_factory.mktemp("qdrant") / "storage", [])
    yield running
    running.stop(remove_storage=True)


@pytest.fixture(autouse=True)
def _drop_downloads(tmp_path: Path) -> Iterator[None]:
    """Snapshot files are large: empty each test's tmp_path afterwards (pytest keeps 3 runs)."""
    yield
    for entry in tmp_path.iterdir():
        if entry.is_dir():
            shutil.rmtree(entry, ignore_errors=True)
        elif entry.suffix != ".log":
            entry.unlink()


@pytest.fixture
def api(server: RunningServer) -> Iterator[CheckedClient]:
    """Contract-checked client of the shared server; faults reset after each test."""
    yield server.client
    server.client.http.delete("/__faults")


@pytest.fixture
def collection_name() -> str:
    """A collection name no other test uses."""
    return f"col_{uuid.uuid4().hex[:10]}"


def make_collection(api: CheckedClient, name: str, vectors: Optional[Dict[str, Any]] = None, **extra: Any) -> None:
    """Create a collection (default: 4-dim Dot vectors)."""
    body = {"vectors": vectors or {"size": 4, "distance": "Dot"}, **extra}
    assert api.result("PUT", f"/collections/{name}", json=body) is True


def sample_points(count: int = 25, dim: int = 4) -> List[Dict[str, Any]]:
    """Points with int and UUID ids, float32-exact vectors and varied payloads."""
    result = []
    for i in range(count):
        point_id: Any = i + 1 if i % 5 else str(uuid.UUID(int=i + 1000))
        result.append(
            {
                "id": point_id,
                "vector": [round((i + 1) * 0.25 + k * 0.5, 2) for k in range(dim)],
                "payload": {
                    "n": i,
                    "name": f"point-{i}",
                    "tags": ["a", i % 3],
                    "nested": {"ok": i % 2 == 0, "f": i / 4},
                },
            }
        )
    return result


def all_points(api: CheckedClient, name: str, with_vector: bool = True) -> List[Dict[str, Any]]:
    """Every point of a collection, paging through scroll."""
    found: List[Dict[str, Any]] = []
    offset: Any = None
    while True:
        page = api.result(
            "POST",
            f"/collections/{name}/points/scroll",
            json={"limit": 7, "offset": offset, "with_payload": True, "with_vector": with_vector},
        )
        found.extend(page["points"])
        offset = page["next_page_offset"]
        if offset is None:
            return found


def by_id(points: List[Dict[str, Any]]) -> Dict[str, Dict[str, Any]]:
    return {json.dumps(p["id"]): p for p in points}
