"""Collections and aliases."""

from __future__ import annotations

from .conftest import CheckedClient, make_collection


def test_create_get_list_exists_delete(api: CheckedClient, collection_name: str) -> None:
    make_collection(api, collection_name, hnsw_config={"m": 32}, optimizers_config={"indexing_threshold": 0})
    info = api.result("GET", f"/collections/{collection_name}")
    assert info["status"] == "green"
    assert info["optimizer_status"] == "ok"
    assert info["points_count"] == 0
    assert info["segments_count"] >= 1
    assert info["config"]["params"]["vectors"] == {"size": 4, "distance": "Dot"}
    assert info["config"]["params"]["shard_number"] == 1
    assert info["config"]["hnsw_config"]["m"] == 32
    assert info["config"]["hnsw_config"]["ef_construct"] == 100
    assert info["config"]["optimizer_config"]["indexing_threshold"] == 0
    assert info["config"]["wal_config"] == {"wal_capacity_mb": 32, "wal_segments_ahead": 0, "wal_retain_closed": 1}
    assert {"name": collection_name} in api.result("GET", "/collections")["collections"]
    assert api.result("GET", f"/collections/{collection_name}/exists") == {"exists": True}
    assert api.result("DELETE", f"/collections/{collection_name}") is True
    assert api.result("GET", f"/collections/{collection_name}/exists") == {"exists": False}
    assert api.result("DELETE", f"/collections/{collection_name}") is False


def test_named_vectors_config(api: CheckedClient, collection_name: str) -> None:
    vectors = {"text": {"size": 3, "distance": "Cosine"}, "image": {"size": 2, "distance": "Euclid", "on_disk": True}}
    make_collection(api, collection_name, vectors=vectors)
    assert api.result("GET", f"/collections/{collection_name}")["config"]["params"]["vectors"] == vectors


def test_missing_collection_is_404(api: CheckedClient) -> None:
    response = api.get("/collections/does_not_exist")
    assert response.status_code == 404
    assert response.json()["status"]["error"] == "Not found: Collection `does_not_exist` doesn't exist!"


def test_duplicate_create_is_409(api: CheckedClient, collection_name: str) -> None:
    make_collection(api, collection_name)
    response = api.put(f"/collections/{collection_name}", json={"vectors": {"size": 4, "distance": "Dot"}})
    assert response.status_code == 409
    assert response.json()["status"]["error"] == f"Wrong input: Collection `{collection_name}` already exists!"


def test_invalid_config_is_rejected(api: CheckedClient, collection_name: str) -> None:
    bad_distance = api.put(f"/collections/{collection_name}", json={"vectors": {"size": 4, "distance": "Hamming"}})
    assert bad_distance.status_code == 400
    zero_size = api.put(f"/collections/{collection_name}", json={"vectors": {"size": 0, "distance": "Dot"}})
    assert zero_size.status_code == 422
    assert api.result("GET", f"/collections/{collection_name}/exists") == {"exists": False}


def test_aliases_create_rename_delete(api: CheckedClient, collection_name: str) -> None:
    make_collection(api, collection_name)
    alias, renamed = f"{collection_name}_a", f"{collection_name}_b"
    actions = {"actions": [{"create_alias": {"collection_name": collection_name, "alias_name": alias}}]}
    assert api.result("POST", "/collections/aliases", json=actions) is True
    expected = {"alias_name": alias, "collection_name": collection_name}
    assert expected in api.result("GET", "/aliases")["aliases"]
    assert api.result("GET", f"/collections/{collection_name}/aliases") == {"aliases": [expected]}
    # an alias works wherever the collection name does
    assert api.result("GET", f"/collections/{alias}")["config"]["params"]["vectors"]["size"] == 4
    assert api.result("GET", f"/collections/{alias}/exists") == {"exists": True}
    rename = {"actions": [{"rename_alias": {"old_alias_name": alias, "new_alias_name": renamed}}]}
    assert api.result("POST", "/collections/aliases", json=rename) is True
    assert api.result("GET", f"/collections/{collection_name}/aliases")["aliases"] == [
        {"alias_name": renamed, "collection_name": collection_name}
    ]
    delete = {"actions": [{"delete_alias": {"alias_name": renamed}}]}
    assert api.result("POST", "/collections/aliases", json=delete) is True
    assert api.result("GET", f"/collections/{collection_name}/aliases") == {"aliases": []}


def test_alias_errors_and_cleanup(api: CheckedClient, collection_name: str) -> None:
    missing = api.post(
        "/collections/aliases",
        json={"actions": [{"create_alias": {"collection_name": "nope_nope", "alias_name": "x_alias"}}]},
    )
    assert missing.status_code == 404
    gone = api.post("/collections/aliases", json={"actions": [{"delete_alias": {"alias_name": "never_made"}}]})
    assert gone.status_code == 404
    assert gone.json()["status"]["error"] == "Not found: Alias `never_made` doesn't exist!"
    make_collection(api, collection_name)
    alias = f"{collection_name}_alias"
    api.result(
        "POST",
        "/collections/aliases",
        json={"actions": [{"create_alias": {"collection_name": collection_name, "alias_name": alias}}]},
    )
    api.result("DELETE", f"/collections/{collection_name}")
    assert all(a["alias_name"] != alias for a in api.result("GET", "/aliases")["aliases"])
