"""Check HTTP responses against the vendored Qdrant OpenAPI document.

For a request ``METHOD /concrete/path`` and a response status, :meth:`OpenApiContract.check`
finds the path template (``/collections/{collection_name}/...``), the response object for the
status (falling back to ``4XX`` / ``5XX`` / ``default`` as OpenAPI does), checks that the
document declares the response's content type, and validates a JSON body with the schema the
document gives, using ``openapi-schema-validator`` (OpenAPI 3.0 dialect: ``nullable`` etc.).

``strict=True`` (the default) additionally forbids properties the document does not list: every
object schema that has ``properties`` and no ``additionalProperties`` gets
``additionalProperties: false``. Qdrant's document is generated from its Rust types, so a real
server never sends fields it does not describe; strictness catches invented fields.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from openapi_schema_validator import OAS30Validator, oas30_format_checker

DOCUMENT = Path(__file__).resolve().parents[1] / "qdrant_server" / "openapi" / "qdrant-openapi-v1.19.json"


def _tighten(node: Any) -> Any:
    if isinstance(node, dict):
        tightened = {key: _tighten(value) for key, value in node.items()}
        if "properties" in tightened and "additionalProperties" not in tightened:
            tightened["additionalProperties"] = False
        return tightened
    if isinstance(node, list):
        return [_tighten(item) for item in node]
    return node


class ContractError(AssertionError):
    """A response that the OpenAPI document does not allow."""


class OpenApiContract:
    """The vendored document, with lookups by concrete request path."""

    def __init__(self, document: Path = DOCUMENT, strict: bool = True) -> None:
        self.document: Dict[str, Any] = json.loads(document.read_text(encoding="utf-8"))
        self.strict = strict
        components = self.document["components"]
        self._components = _tighten(components) if strict else components
        self._templates: List[Tuple[re.Pattern, str, int]] = []
        for template in self.document["paths"]:
            pattern = re.sub(r"\\\{\w+\\\}", "[^/]+", re.escape(template))
            literal = len(re.sub(r"\{\w+\}", "", template))
            self._templates.append((re.compile(f"^{pattern}$"), template, literal))

    def template_for(self, method: str, path: str) -> str:
        """The path template serving ``method path``; the most literal match wins."""
        candidates = [
            (literal, template)
            for regex, template, literal in self._templates
            if regex.match(path) and method.lower() in self.document["paths"][template]
        ]
        if not candidates:
            raise ContractError(f"{method} {path} is not an operation of the Qdrant API")
        return max(candidates)[1]

    def response_spec(self, method: str, template: str, status: int) -> Dict[str, Any]:
        """The response object for ``status`` (exact code, then ``NXX``, then ``default``)."""
        responses = self.document["paths"][template][method.lower()]["responses"]
        for key in (str(status), f"{str(status)[0]}XX", "default"):
            if key in responses:
                return responses[key]
        raise ContractError(f"{method} {template} does not document status {status}: {sorted(responses)}")

    def schema_for(
        self, method: str, path: str, status: int, content_type: str = "application/json"
    ) -> Optional[Dict[str, Any]]:
        """Resolved-ready schema (components attached) or None if the response has no body schema."""
        template = self.template_for(method, path)
        spec = self.response_spec(method, template, status)
        content = spec.get("content")
        if not content:
            return None
        if content_type not in content:
            raise ContractError(f"{method} {template} {status}: content type {content_type!r} not in {sorted(content)}")
        schema = content[content_type].get("schema")
        if schema is None:
            return None
        root = _tighten(copy.deepcopy(schema)) if self.strict else copy.deepcopy(schema)
        root["components"] = self._components
        return root

    def check(self, method: str, path: str, status: int, content_type: Optional[str], body: bytes) -> None:
        """Validate one response; raises :class:`ContractError` with the reasons."""
        media = (content_type or "").split(";")[0].strip()
        if method.upper() == "HEAD" or (not body and not media):
            self.template_for(method if method.upper() != "HEAD" else "GET", path)
            return
        schema = self.schema_for(method, path, status, media)
        if media != "application/json" or schema is None:
            return
        instance = json.loads(body)
        validator = OAS30Validator(schema, format_checker=oas30_format_checker)
        problems = sorted(validator.iter_errors(instance), key=lambda e: list(e.absolute_path))
        if problems:
            details = "\n".join(
                f"  at /{'/'.join(map(str, p.absolute_path))}: {p.message[:300]}" for p in problems[:10]
            )
            raise ContractError(f"{method} {path} -> {status} violates the OpenAPI schema:\n{details}")
