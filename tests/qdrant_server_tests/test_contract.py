"""The contract checker itself must reject what the OpenAPI document does not allow."""

from __future__ import annotations

import json
from typing import Any, Dict

import pytest

from .openapi_contract import ContractError, OpenApiContract

CONTRACT = OpenApiContract()
OK_RESULT: Dict[str, Any] = {
    "name": "c-1-2024-01-01-00-00-00.snapshot",
    "creation_time": "2024-01-01T00:00:00",
    "size": 10,
    "checksum": None,
}
OK_SNAPSHOT: Dict[str, Any] = {"result": OK_RESULT, "status": "ok", "time": 0.1}


def _check(method: str, path: str, status: int, body: object, content_type: str = "application/json") -> None:
    CONTRACT.check(method, path, status, content_type, json.dumps(body).encode())


def test_templates_prefer_literal_segments() -> None:
    assert CONTRACT.template_for("POST", "/collections/aliases") == "/collections/aliases"
    assert (
        CONTRACT.template_for("POST", "/collections/c/snapshots/upload")
        == "/collections/{collection_name}/snapshots/upload"
    )
    assert (
        CONTRACT.template_for("GET", "/collections/c/snapshots/x.snapshot")
        == "/collections/{collection_name}/snapshots/{snapshot_name}"
    )


def test_valid_response_passes() -> None:
    _check("POST", "/collections/c/snapshots", 200, OK_SNAPSHOT)
    _check("POST", "/collections/c/snapshots", 202, {"status": "accepted", "time": 0.0})
    _check("GET", "/collections/c", 404, {"status": {"error": "Not found: x"}, "time": 0.0})


@pytest.mark.parametrize(
    "body",
    [
        {**OK_SNAPSHOT, "result": {**OK_RESULT, "invented": 1}},  # field not in the schema
        {**OK_SNAPSHOT, "result": {"name": "x"}},  # required `size` missing
        {**OK_SNAPSHOT, "result": {**OK_RESULT, "size": "10"}},  # wrong type
        {**OK_SNAPSHOT, "result": {**OK_RESULT, "size": -1}},  # below minimum
    ],
)
def test_invalid_response_fails(body: object) -> None:
    with pytest.raises(ContractError):
        _check("POST", "/collections/c/snapshots", 200, body)


def test_undocumented_operation_or_content_type_fails() -> None:
    with pytest.raises(ContractError):
        CONTRACT.template_for("GET", "/no/such/path")
    with pytest.raises(ContractError):
        _check("GET", "/collections/c/snapshots/x.snapshot", 200, {}, content_type="text/html")
