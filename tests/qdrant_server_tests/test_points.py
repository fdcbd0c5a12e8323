"""Points: upsert (list and batch, named and unnamed vectors), count, scroll, retrieve, delete."""

from __future__ import annotations

import uuid

from .conftest import CheckedClient, all_points, by_id, make_collection, sample_points


def test_upsert_list_wait_and_acknowledge(api: CheckedClient, collection_name: str) -> None:
    make_collection(api, collection_name)
    points = sample_points(6)
    waited = api.result("PUT", f"/collections/{collection_name}/points?wait=true", json={"points": points[:3]})
    assert waited["status"] == "completed"
    queued = api.result("PUT", f"/collections/{collection_name}/points", json={"points": points[3:]})
    assert queued["status"] == "acknowledged"
    assert queued["operation_id"] > waited["operation_id"]
    assert api.result("POST", f"/collections/{collection_name}/points/count", json={"exact": True}) == {"count": 6}
    assert api.result("GET", f"/collections/{collection_name}")["points_count"] == 6


def test_upsert_batch_form(api: CheckedClient, collection_name: str) -> None:
    make_collection(api, collection_name, vectors={"size": 2, "distance": "Euclid"})
    batch = {
        "ids": [1, 2, 3],
        "vectors": [[0.5, 1.5], [2.0, 3.0], [-1.25, 0.0]],
        "payloads": [{"a": 1}, None, {"c": [1, 2]}],
    }
    api.result("PUT", f"/collections/{collection_name}/points?wait=true", json={"batch": batch})
    stored = by_id(all_points(api, collection_name))
    assert stored["1"] == {"id": 1, "payload": {"a": 1}, "vector": [0.5, 1.5]}
    assert stored["2"] == {"id": 2, "payload": {}, "vector": [2.0, 3.0]}
    assert stored["3"]["payload"] == {"c": [1, 2]}


def test_named_vectors_list_and_batch(api: CheckedClient, collection_name: str) -> None:
    make_collection(
        api,
        collection_name,
        vectors={"text": {"size": 3, "distance": "Dot"}, "image": {"size": 2, "distance": "Euclid"}},
    )
    api.result(
        "PUT",
        f"/collections/{collection_name}/points?wait=true",
        json={"points": [{"id": 1, "vector": {"text": [0.1, 0.2, 0.3], "image": [1.0, 2.0]}, "payload": {"k": "v"}}]},
    )
    api.result(
        "PUT",
        f"/collections/{collection_name}/points?wait=true",
        json={"batch": {"ids": [2], "vectors": {"text": [[0.5, 0.5, 0.5]], "image": [[3.0, 4.0]]}}},
    )
    point = api.result("GET", f"/collections/{collection_name}/points/1")
    assert point == {"id": 1, "payload": {"k": "v"}, "vector": {"text": [0.1, 0.2, 0.3], "image": [1.0, 2.0]}}
    two = api.result("POST", f"/collections/{collection_name}/points", json={"ids": [2], "with_vector": ["image"]})
    assert two == [{"id": 2, "payload": {}, "vector": {"image": [3.0, 4.0]}}]


def test_scroll_pages_through_everything(api: CheckedClient, collection_name: str) -> None:
    make_collection(api, collection_name)
    points = sample_points(25)
    api.result("PUT", f"/collections/{collection_name}/points?wait=true", json={"points": points})
    first = api.result("POST", f"/collections/{collection_name}/points/scroll", json={"limit": 10})
    assert len(first["points"]) == 10
    assert first["points"][0]["vector"] is None  # with_vector defaults to false
    assert first["points"][0]["payload"] is not None  # with_payload defaults to true
    assert first["next_page_offset"] is not None
    stored = by_id(all_points(api, collection_name))
    assert stored == by_id(points)
    no_payload = api.result(
        "POST", f"/collections/{collection_name}/points/scroll", json={"limit": 1, "with_payload": False}
    )
    assert no_payload["points"][0]["payload"] is None


def test_retrieve_by_id_get_and_post(api: CheckedClient, collection_name: str) -> None:
    make_collection(api, collection_name)
    points = sample_points(6)
    api.result("PUT", f"/collections/{collection_name}/points?wait=true", json={"points": points})
    uid = points[0]["id"]
    assert api.result("GET", f"/collections/{collection_name}/points/{uid}") == points[0]
    assert api.result("GET", f"/collections/{collection_name}/points/2") == points[1]
    found = api.result("POST", f"/collections/{collection_name}/points", json={"ids": [2, 3, 999], "with_vector": True})
    assert by_id(found) == by_id(points[1:3])
    missing = api.get(f"/collections/{collection_name}/points/999")
    assert missing.status_code == 404
    assert missing.json()["status"]["error"] == "Not found: No point with id 999 found"


def test_uuid_ids_are_normalised(api: CheckedClient, collection_name: str) -> None:
    make_collection(api, collection_name, vectors={"size": 1, "distance": "Dot"})
    raw = uuid.uuid4()
    api.result(
        "PUT",
        f"/collections/{collection_name}/points?wait=true",
        json={"points": [{"id": raw.hex.upper(), "vector": [1.0]}]},
    )
    assert all_points(api, collection_name)[0]["id"] == str(raw)


def test_bad_points_change_nothing(api: CheckedClient, collection_name: str) -> None:
    make_collection(api, collection_name)
    good = sample_points(1)[0]
    wrong_dim = api.put(
        f"/collections/{collection_name}/points?wait=true",
        json={"points": [good, {"id": 50, "vector": [1.0, 2.0]}]},
    )
    assert wrong_dim.status_code == 400
    assert wrong_dim.json()["status"]["error"] == "Wrong input: Vector dimension error: expected dim: 4, got 2"
    wrong_name = api.put(
        f"/collections/{collection_name}/points?wait=true", json={"points": [{"id": 51, "vector": {"x": [1.0]}}]}
    )
    assert wrong_name.status_code == 400
    assert wrong_name.json()["status"]["error"] == "Wrong input: Not existing vector name error: x"
    negative = api.put(f"/collections/{collection_name}/points", json={"points": [{"id": -1, "vector": [1, 2, 3, 4]}]})
    assert negative.status_code == 400
    assert api.result("POST", f"/collections/{collection_name}/points/count", json={}) == {"count": 0}


def test_filters_are_refused_not_ignored(api: CheckedClient, collection_name: str) -> None:
    make_collection(api, collection_name)
    response = api.post(f"/collections/{collection_name}/points/count", json={"filter": {"must": []}})
    assert response.status_code == 400


def test_delete_points(api: CheckedClient, collection_name: str) -> None:
    make_collection(api, collection_name)
    points = sample_points(6)
    api.result("PUT", f"/collections/{collection_name}/points?wait=true", json={"points": points})
    api.result("POST", f"/collections/{collection_name}/points/delete?wait=true", json={"points": [2, 3]})
    assert api.result("POST", f"/collections/{collection_name}/points/count", json={}) == {"count": 4}


def test_points_of_missing_collection_is_404(api: CheckedClient) -> None:
    response = api.post("/collections/nope_nope/points/scroll", json={})
    assert response.status_code == 404
