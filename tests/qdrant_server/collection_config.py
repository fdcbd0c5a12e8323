"""Collection configuration: Qdrant's defaults, request validation, and the Edge config.

The configuration is kept in the JSON shape Qdrant returns under ``result.config`` of
``GET /collections/{name}`` (``CollectionConfig`` in the OpenAPI document). The same object, plus
``uuid``, is written to the collection's ``config.json`` and into snapshots, like Qdrant's
``CollectionConfigInternal``.
"""

from __future__ import annotations

import copy
import uuid
from typing import Any, Dict, Mapping, Optional

import qdrant_edge as edge

from . import errors

JsonDict = Dict[str, Any]

DISTANCES = ("Cosine", "Euclid", "Dot", "Manhattan")
DATATYPES = {"float32": "Float32", "float16": "Float16", "uint8": "Uint8"}

DEFAULT_HNSW: JsonDict = {
    "m": 16,
    "ef_construct": 100,
    "full_scan_threshold": 10000,
    "max_indexing_threads": 0,
    "on_disk": False,
}
DEFAULT_OPTIMIZER: JsonDict = {
    "deleted_threshold": 0.2,
    "vacuum_min_vector_number": 1000,
    "default_segment_number": 0,
    "max_segment_size": None,
    "memmap_threshold": None,
    "indexing_threshold": 10000,
    "flush_interval_sec": 5,
    "max_optimization_threads": None,
}
DEFAULT_WAL: JsonDict = {"wal_capacity_mb": 32, "wal_segments_ahead": 0, "wal_retain_closed": 1}
VECTOR_PARAM_KEYS = (
    "size",
    "distance",
    "hnsw_config",
    "quantization_config",
    "on_disk",
    "memory",
    "datatype",
    "multivector_config",
)
CREATE_KEYS = frozenset(
    {
        "vectors",
        "shard_number",
        "sharding_method",
        "replication_factor",
        "write_consistency_factor",
        "on_disk_payload",
        "payload",
        "hnsw_config",
        "wal_config",
        "optimizers_config",
        "quantization_config",
        "sparse_vectors",
        "strict_mode_config",
        "metadata",
    }
)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _vector_params(raw: Any, where: str) -> JsonDict:
    """Validate one ``VectorParams`` object and return it normalised."""
    if not isinstance(raw, dict):
        raise errors.json_error(f"{where}: expected an object with `size` and `distance`")
    if "size" not in raw or "distance" not in raw:
        raise errors.json_error(f"{where}: missing field `size` or `distance`")
    size = raw["size"]
    if not _is_int(size):
        raise errors.json_error(f"{where}.size: invalid type, expected u64")
    if size < 1:
        raise errors.validation_error("JSON body", f"{where}.size: value {size} invalid, must be 1 or larger")
    if raw["distance"] not in DISTANCES:
        raise errors.json_error(
            f"{where}.distance: unknown variant `{raw['distance']}`, expected one of "
            + ", ".join(f"`{d}`" for d in DISTANCES)
        )
    if raw.get("multivector_config") is not None:
        raise errors.unsupported("multivector_config")
    datatype = raw.get("datatype")
    if datatype is not None and datatype not in DATATYPES:
        raise errors.unsupported(f"vector datatype {datatype!r}")
    unknown = set(raw) - set(VECTOR_PARAM_KEYS)
    if unknown:
        raise errors.json_error(f"{where}: unknown field `{sorted(unknown)[0]}`")
    return {key: raw[key] for key in VECTOR_PARAM_KEYS if key in raw and raw[key] is not None}


def _vectors(raw: Any) -> JsonDict:
    """Validate ``vectors``: one unnamed ``VectorParams`` or a map of named ones."""
    if raw is None:
        raise errors.unsupported("a collection without dense vectors")
    if isinstance(raw, dict) and "size" in raw and "distance" in raw:
        return _vector_params(raw, "vectors")
    if not isinstance(raw, dict) or not raw:
        raise errors.json_error("vectors: expected VectorParams or a map of named VectorParams")
    return {name: _vector_params(params, f"vectors.{name}") for name, params in raw.items()}


def _merge_diff(defaults: JsonDict, diff: Any, where: str) -> JsonDict:
    merged = copy.deepcopy(defaults)
    if diff is None:
        return merged
    if not isinstance(diff, dict):
        raise errors.json_error(f"{where}: expected an object")
    merged.update({key: value for key, value in diff.items() if value is not None})
    return merged


def _positive_int(body: Mapping[str, Any], key: str, default: int) -> int:
    value = body.get(key)
    if value is None:
        return default
    if not _is_int(value):
        raise errors.json_error(f"{key}: invalid type, expected u32")
    if value < 1:
        raise errors.validation_error("JSON body", f"{key}: value {value} invalid, must be 1 or larger")
    return value


def config_from_create_request(body: Any) -> JsonDict:
    """Build the collection config Qdrant would report for a ``PUT /collections/{name}`` body."""
    if not isinstance(body, dict):
        raise errors.json_error("expected a JSON object (CreateCollection)")
    unknown = set(body) - CREATE_KEYS
    if "init_from" in unknown:
        raise errors.unsupported("init_from")
    if unknown:
        raise errors.json_error(f"unknown field `{sorted(unknown)[0]}`")
    if body.get("sparse_vectors"):
        raise errors.unsupported("sparse_vectors")
    if body.get("sharding_method") not in (None, "auto"):
        raise errors.unsupported("custom sharding")
    shard_number = _positive_int(body, "shard_number", 1)
    if shard_number != 1:
        raise errors.unsupported("shard_number other than 1")
    params: JsonDict = {
        "vectors": _vectors(body.get("vectors")),
        "shard_number": shard_number,
        "replication_factor": _positive_int(body, "replication_factor", 1),
        "write_consistency_factor": _positive_int(body, "write_consistency_factor", 1),
        "on_disk_payload": True if body.get("on_disk_payload") is None else bool(body["on_disk_payload"]),
    }
    if body.get("sharding_method") is not None:
        params["sharding_method"] = body["sharding_method"]
    if body.get("payload") is not None:
        params["payload"] = body["payload"]
    config: JsonDict = {
        "params": params,
        "hnsw_config": _merge_diff(DEFAULT_HNSW, body.get("hnsw_config"), "hnsw_config"),
        "optimizer_config": _merge_diff(DEFAULT_OPTIMIZER, body.get("optimizers_config"), "optimizers_config"),
        "wal_config": _merge_diff(DEFAULT_WAL, body.get("wal_config"), "wal_config"),
        "quantization_config": body.get("quantization_config"),
        "strict_mode_config": _merge_diff({"enabled": False}, body.get("strict_mode_config"), "strict_mode_config"),
    }
    if body.get("metadata") is not None:
        config["metadata"] = body["metadata"]
    return config


def with_uuid(config: JsonDict) -> JsonDict:
    """Return the on-disk form (``config.json``): the API config plus a fresh ``uuid``."""
    stored = copy.deepcopy(config)
    stored["uuid"] = str(uuid.uuid4())
    return stored


def api_view(stored: Mapping[str, Any]) -> JsonDict:
    """Return the config as ``GET /collections/{name}`` shows it (without ``uuid``)."""
    return {key: copy.deepcopy(value) for key, value in stored.items() if key != "uuid"}


def is_named(config: Mapping[str, Any]) -> bool:
    """True when the collection uses named vectors."""
    vectors = config["params"]["vectors"]
    return not ("size" in vectors and "distance" in vectors)


def vector_params(config: Mapping[str, Any]) -> Dict[str, JsonDict]:
    """Map vector name (``""`` for the unnamed vector) to its params."""
    vectors = config["params"]["vectors"]
    return dict(vectors) if is_named(config) else {"": dict(vectors)}


def _edge_vector(params: Mapping[str, Any]) -> "edge.EdgeVectorParams":
    datatype = params.get("datatype")
    return edge.EdgeVectorParams(
        size=params["size"],
        distance=getattr(edge.Distance, params["distance"]),
        on_disk=params.get("on_disk"),
        datatype=getattr(edge.VectorStorageDatatype, DATATYPES[datatype]) if datatype else None,
    )


def edge_config(config: Mapping[str, Any]) -> "edge.EdgeConfig":
    """Translate the collection config into Qdrant Edge's shard config.

    Only the stored data's shape is translated (vectors, payload placement); index and
    optimizer settings stay Edge's defaults because this server never builds HNSW indexes.
    """
    vectors = {name: _edge_vector(params) for name, params in vector_params(config).items()}
    on_disk_payload: Optional[bool] = config["params"].get("on_disk_payload")
    return edge.EdgeConfig(
        vectors=vectors[""] if not is_named(config) else vectors,
        on_disk_payload=on_disk_payload,
    )


def same_vectors(left: Mapping[str, Any], right: Mapping[str, Any]) -> bool:
    """Qdrant's recovery check: ``params.vectors`` of snapshot and collection must be equal."""
    return left["params"]["vectors"] == right["params"]["vectors"]
