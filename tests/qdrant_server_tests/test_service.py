"""Service endpoints, version override and API-key handling."""

from __future__ import annotations

from contextlib import closing

import httpx
import pytest
from qdrant_client import QdrantClient, models
from qdrant_client.http.exceptions import UnexpectedResponse

from .conftest import CheckedClient, RunningServer, ServerFactory, make_collection


def test_root_reports_version_and_commit(api: CheckedClient) -> None:
    response = api.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert body["title"] == "qdrant - vector search engine"
    assert body["version"] == "1.19.2"
    assert len(body["commit"]) == 40


def test_version_flag_changes_reported_version(start_server: ServerFactory) -> None:
    server = start_server("--version", "1.18.0")
    assert server.client.get("/").json()["version"] == "1.18.0"
    with closing(QdrantClient(url=server.url, check_compatibility=False)) as client:
        assert client.info().version == "1.18.0"


@pytest.mark.parametrize(
    ("path", "text"),
    [("/healthz", "healthz check passed"), ("/livez", "healthz check passed"), ("/readyz", "all shards are ready")],
)
def test_health_endpoints_answer_plain_text(api: CheckedClient, path: str, text: str) -> None:
    response = api.get(path)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert response.text == text


def test_unknown_route_is_404_without_body(api: CheckedClient) -> None:
    response = api.http.get("/no/such/route")
    assert response.status_code == 404
    assert response.content == b""


def test_malformed_json_body_is_400_envelope(api: CheckedClient, collection_name: str) -> None:
    response = api.put(
        f"/collections/{collection_name}", content=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400
    assert response.json()["status"]["error"].startswith("Json deserialize error:")


@pytest.fixture
def secured(start_server: ServerFactory) -> RunningServer:
    return start_server("--api-key", "rw-secret", "--read-only-api-key", "ro-secret", api_key="rw-secret")


def _raw(server: RunningServer, headers: dict) -> CheckedClient:
    client = CheckedClient(server.url)
    client.http.headers.update(headers)
    return client


def test_missing_key_is_401_plain_text(secured: RunningServer) -> None:
    anonymous = _raw(secured, {})
    response = anonymous.get("/collections")
    assert response.status_code == 401
    assert response.headers["content-type"].startswith("text/plain")
    assert response.text == "Must provide an API key or an Authorization bearer token"


def test_wrong_key_is_401(secured: RunningServer) -> None:
    response = _raw(secured, {"api-key": "wrong"}).get("/collections")
    assert response.status_code == 401
    assert response.text == "Invalid API key or JWT"
    bearer = _raw(secured, {"Authorization": "Bearer wrong"}).get("/collections")
    assert bearer.status_code == 401


def test_right_key_by_header_or_bearer(secured: RunningServer) -> None:
    assert _raw(secured, {"api-key": "rw-secret"}).result("GET", "/collections") == {"collections": []}
    assert _raw(secured, {"Authorization": "Bearer rw-secret"}).result("GET", "/collections") == {"collections": []}


def test_health_and_root_are_exempt(secured: RunningServer) -> None:
    anonymous = _raw(secured, {})
    for path in ("/", "/healthz", "/livez", "/readyz"):
        assert anonymous.get(path).status_code == 200, path


def test_read_only_key_reads_but_cannot_write(secured: RunningServer, collection_name: str) -> None:
    make_collection(secured.client, collection_name)
    reader = _raw(secured, {"api-key": "ro-secret"})
    assert reader.result("GET", f"/collections/{collection_name}")["status"] == "green"
    assert reader.result("POST", f"/collections/{collection_name}/points/scroll", json={})["points"] == []
    assert reader.result("POST", f"/collections/{collection_name}/points/count", json={}) == {"count": 0}
    denied = reader.post(f"/collections/{collection_name}/snapshots")
    assert denied.status_code == 403
    assert denied.text == "Write access denied"
    assert reader.put(f"/collections/{collection_name}/points", json={"points": []}).status_code == 403


@pytest.mark.filterwarnings("ignore:Api key is used with an insecure connection")
def test_qdrant_client_with_wrong_key_fails(secured: RunningServer) -> None:
    with closing(QdrantClient(url=secured.url, api_key="wrong", check_compatibility=False)) as client:
        with pytest.raises(UnexpectedResponse) as failure:
            client.get_collections()
    assert failure.value.status_code == 401


@pytest.mark.filterwarnings("ignore:Api key is used with an insecure connection")
def test_qdrant_client_with_right_key_works(secured: RunningServer, collection_name: str) -> None:
    with closing(QdrantClient(url=secured.url, api_key="rw-secret", check_compatibility=False)) as client:
        client.create_collection(
            collection_name, vectors_config=models.VectorParams(size=2, distance=models.Distance.DOT)
        )
        assert client.collection_exists(collection_name)


def test_faults_endpoint_needs_no_key(secured: RunningServer) -> None:
    response = httpx.get(f"{secured.url}/__faults")
    assert response.status_code == 200
    assert response.json()["snapshot_delay"] == 0.0
