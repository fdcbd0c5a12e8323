"""Conversion between Qdrant's REST point JSON and Qdrant Edge objects.

Requests are validated completely before anything reaches Edge: an upsert that Edge rejects
half-way can leave a point without vectors behind, while Qdrant rejects the whole request.
"""

from __future__ import annotations

import math
import struct
import uuid
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import qdrant_edge as edge

from . import collection_config, errors

PointId = Union[int, str]
EdgePointId = Union[int, uuid.UUID, str]
EdgeVector = Union[List[float], Dict[str, Any]]
JsonDict = Dict[str, Any]

_MAX_ID = 2**64 - 1
_F32 = struct.Struct("<f")


def parse_point_id(raw: Any) -> PointId:
    """Parse an ``ExtendedPointId``: an unsigned 64-bit integer or a UUID string."""
    if isinstance(raw, int) and not isinstance(raw, bool) and 0 <= raw <= _MAX_ID:
        return raw
    if isinstance(raw, str):
        try:
            return str(uuid.UUID(raw))
        except ValueError:
            raise errors.json_error(f"Unable to parse UUID: {raw}") from None
    raise errors.json_error("data did not match any variant of untagged enum ExtendedPointId")


def parse_id_from_path(raw: str) -> PointId:
    """Parse the ``{id}`` of ``GET /collections/{name}/points/{id}``."""
    if raw.isdigit():
        return parse_point_id(int(raw))
    return parse_point_id(raw)


def id_to_json(point_id: Any) -> PointId:
    """Edge returns UUID ids as ``uuid.UUID``; Qdrant prints them hyphenated lower-case."""
    return str(point_id) if isinstance(point_id, uuid.UUID) else int(point_id)


def f32_json(value: float) -> float:
    """Shortest decimal that reads back as the same float32, as Qdrant (serde/ryu) prints it."""
    if not math.isfinite(value):
        return value
    target = _F32.pack(value)
    for digits in range(1, 10):
        candidate = float(f"{value:.{digits}g}")
        if _F32.pack(candidate) == target:
            return candidate
    return value


def _dense(raw: Any, dim: int, where: str) -> List[float]:
    if not isinstance(raw, list) or not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in raw):
        raise errors.json_error(f"{where}: expected an array of numbers")
    if raw and isinstance(raw[0], list):
        raise errors.unsupported("multi-vectors")
    if len(raw) != dim:
        raise errors.bad_input(f"Vector dimension error: expected dim: {dim}, got {len(raw)}")
    return [float(x) for x in raw]


def parse_vector(raw: Any, config: Mapping[str, Any], where: str) -> EdgeVector:
    """Validate a ``VectorStruct`` against the collection's vector params."""
    params = collection_config.vector_params(config)
    if isinstance(raw, list):
        if "" not in params:
            raise errors.bad_input("Not existing vector name error: ")
        return _dense(raw, params[""]["size"], where)
    if isinstance(raw, dict):
        if isinstance(raw.get("model"), str):
            raise errors.unsupported("inference objects (Document, Image)")
        named: Dict[str, Any] = {}
        for name, vector in raw.items():
            if isinstance(vector, dict):
                raise errors.unsupported("sparse vectors and inference objects")
            if name not in params:
                raise errors.bad_input(f"Not existing vector name error: {name}")
            named[name] = _dense(vector, params[name]["size"], f"{where}.{name}")
        return named
    raise errors.json_error(f"{where}: data did not match any variant of untagged enum VectorStruct")


def _payload(raw: Any, where: str) -> Optional[JsonDict]:
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise errors.json_error(f"{where}: expected a JSON object as payload")
    return raw


def parse_points_list(body: Mapping[str, Any], config: Mapping[str, Any]) -> List["edge.Point"]:
    """Points of a ``PointsList`` body (``{"points": [...]}``)."""
    raw_points = body.get("points")
    if not isinstance(raw_points, list):
        raise errors.json_error("points: expected an array")
    points = []
    for index, raw in enumerate(raw_points):
        where = f"points[{index}]"
        if not isinstance(raw, dict) or "id" not in raw or "vector" not in raw:
            raise errors.json_error(f"{where}: missing field `id` or `vector`")
        points.append(
            edge.Point(
                parse_point_id(raw["id"]),
                parse_vector(raw["vector"], config, f"{where}.vector"),
                _payload(raw.get("payload"), f"{where}.payload"),
            )
        )
    return points


def parse_batch(body: Mapping[str, Any], config: Mapping[str, Any]) -> List["edge.Point"]:
    """Points of a ``PointsBatch`` body (``{"batch": {"ids", "vectors", "payloads"}}``)."""
    batch = body.get("batch")
    if not isinstance(batch, dict) or "ids" not in batch or "vectors" not in batch:
        raise errors.json_error("batch: missing field `ids` or `vectors`")
    ids = batch["ids"]
    if not isinstance(ids, list):
        raise errors.json_error("batch.ids: expected an array")
    count = len(ids)
    raw_vectors = batch["vectors"]
    per_point: List[Any]
    if isinstance(raw_vectors, list):
        if len(raw_vectors) != count:
            raise errors.bad_input("number of ids and vectors must be equal")
        per_point = list(raw_vectors)
    elif isinstance(raw_vectors, dict):
        per_point = [{} for _index in range(count)]
        for name, vectors in raw_vectors.items():
            if not isinstance(vectors, list) or len(vectors) != count:
                raise errors.bad_input("number of ids and vectors must be equal")
            for index, vector in enumerate(vectors):
                per_point[index][name] = vector
    else:
        raise errors.json_error("batch.vectors: data did not match any variant of BatchVectorStruct")
    payloads = batch.get("payloads")
    if payloads is None:
        payloads = [None] * count
    if not isinstance(payloads, list) or len(payloads) != count:
        raise errors.bad_input("number of ids and payloads must be equal")
    return [
        edge.Point(
            parse_point_id(ids[i]),
            parse_vector(per_point[i], config, f"batch.vectors[{i}]"),
            _payload(payloads[i], f"batch.payloads[{i}]"),
        )
        for i in range(count)
    ]


def parse_with_payload(raw: Any, default: bool) -> Any:
    """``WithPayloadInterface`` -> the value Edge accepts."""
    if raw is None:
        return default
    if isinstance(raw, bool):
        return raw
    if isinstance(raw, list) and all(isinstance(key, str) for key in raw):
        return raw
    if isinstance(raw, dict) and isinstance(raw.get("include"), list):
        return edge.PayloadSelector.Include(raw["include"])
    if isinstance(raw, dict) and isinstance(raw.get("exclude"), list):
        return edge.PayloadSelector.Exclude(raw["exclude"])
    raise errors.json_error("with_payload: data did not match any variant of WithPayloadInterface")


def parse_with_vector(raw: Any, default: bool) -> Any:
    """``WithVector`` -> the value Edge accepts."""
    if raw is None:
        return default
    if isinstance(raw, bool):
        return raw
    if isinstance(raw, list) and all(isinstance(name, str) for name in raw):
        return raw
    raise errors.json_error("with_vector: data did not match any variant of WithVector")


def _vector_json(vector: Any) -> Any:
    if vector is None:
        return None
    if isinstance(vector, dict):
        return {name: _vector_json(value) for name, value in vector.items()}
    if isinstance(vector, list):
        return [f32_json(x) if isinstance(x, float) else _vector_json(x) for x in vector]
    return vector


def record_json(record: Any) -> JsonDict:
    """An Edge ``Record`` as Qdrant's REST ``Record``: ``payload``/``vector`` are null when not asked."""
    return {
        "id": id_to_json(record.id),
        "payload": record.payload,
        "vector": _vector_json(record.vector),
    }


def parse_ids(raw: Any, where: str) -> List[EdgePointId]:
    """A JSON array of point ids."""
    if not isinstance(raw, list):
        raise errors.json_error(f"{where}: expected an array of point ids")
    return [parse_point_id(item) for item in raw]


def reject_filter(body: Mapping[str, Any], keys: Sequence[str] = ("filter",)) -> None:
    """This server does not evaluate filters; refuse them rather than ignore them."""
    for key in keys:
        if body.get(key) is not None:
            raise errors.unsupported(f"`{key}`")


def scroll_args(body: Mapping[str, Any]) -> Tuple[Optional[PointId], int, Any, Any]:
    """Offset, limit, with_payload, with_vector of a ``ScrollRequest``."""
    reject_filter(body, ("filter", "order_by", "shard_key"))
    offset = body.get("offset")
    limit = body.get("limit")
    if limit is None:
        limit = 10
    if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
        raise errors.validation_error("JSON body", f"limit: value {limit} invalid, must be 1 or larger")
    return (
        parse_point_id(offset) if offset is not None else None,
        limit,
        parse_with_payload(body.get("with_payload"), True),
        parse_with_vector(body.get("with_vector"), False),
    )
