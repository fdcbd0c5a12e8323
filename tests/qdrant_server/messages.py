"""Transport-neutral request and response objects passed between the HTTP layer and the API."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, Dict, Protocol

from . import errors


class Headers(Protocol):
    """Header lookup (``email.message.Message`` as used by ``http.server``)."""

    def get(self, name: str, default: Any = ...) -> Any: ...


@dataclasses.dataclass
class Request:
    """One HTTP request; ``body`` is a streaming reader with ``read``/``drain``."""

    method: str
    path: str
    query: Dict[str, str]
    headers: Headers
    body: Any
    params: Dict[str, str] = dataclasses.field(default_factory=dict)

    def json(self, required: bool = True) -> Any:
        """Parse the body as JSON (``None`` for an empty body when not ``required``)."""
        raw = self.body.read()
        if not raw.strip():
            if required:
                raise errors.json_error("EOF while parsing a value at line 1 column 0")
            return None
        try:
            return json.loads(raw)
        except ValueError as exc:
            raise errors.json_error(str(exc)) from None

    def query_bool(self, name: str, default: bool) -> bool:
        """A boolean query parameter, as serde reads it (``true``/``false`` only)."""
        value = self.query.get(name)
        if value is None:
            return default
        if value not in ("true", "false"):
            raise errors.query_error(f"{name}: provided string was not `true` or `false`")
        return value == "true"


@dataclasses.dataclass
class JsonResult:
    """``{"result": ..., "status": "ok", "time": ...}``."""

    result: Any
    status: int = 200


@dataclasses.dataclass
class Accepted:
    """``202 {"status": "accepted", "time": ...}`` for ``wait=false`` operations."""


@dataclasses.dataclass
class Text:
    """A plain-text response (health endpoints)."""

    text: str
    status: int = 200


@dataclasses.dataclass
class RawJson:
    """A JSON body sent as is (``GET /`` and the non-Qdrant ``/__faults``)."""

    body: Any
    status: int = 200


@dataclasses.dataclass
class FileDownload:
    """A snapshot file streamed to the client."""

    path: Path
    filename: str


@dataclasses.dataclass
class Empty:
    """An empty response (unknown routes: actix answers 404 without a body)."""

    status: int = 404
