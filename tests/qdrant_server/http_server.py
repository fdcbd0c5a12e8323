"""HTTP plumbing on the standard library: routing, API-key checks, envelopes, file streaming."""

from __future__ import annotations

import email.utils
import hmac
import json
import logging
import os
import socket
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Optional, Tuple

from . import errors
from .api import QdrantApi, Route
from .bodies import ChunkedReader, LimitedReader
from .config import ServerConfig
from .messages import Accepted, Empty, FileDownload, JsonResult, RawJson, Request, Text

LOG = logging.getLogger("qdrant_test_server")

_CHUNK = 64 * 1024
# Qdrant's API-key whitelist (src/actix/mod.rs): exact "/" and "/healthz", prefixes "/readyz"
# and "/livez". "/__faults" is this server's own control endpoint.
_WHITELIST_EXACT = ("/", "/healthz")
_WHITELIST_PREFIX = ("/readyz", "/livez", "/__faults")


class AuthKeys:
    """Qdrant's ``AuthKeys::validate_request`` for plain API keys (no JWT)."""

    def __init__(self, read_write: Optional[str], read_only: Optional[str]) -> None:
        self.read_write = read_write
        self.read_only = read_only

    @property
    def enabled(self) -> bool:
        return self.read_write is not None or self.read_only is not None

    @staticmethod
    def _eq(expected: Optional[str], given: str) -> bool:
        return expected is not None and hmac.compare_digest(expected.encode(), given.encode())

    def check(self, path: str, headers: Any, read_only: bool) -> None:
        if not self.enabled or path in _WHITELIST_EXACT or path.startswith(_WHITELIST_PREFIX):
            return
        key = headers.get("api-key")
        if key is None:
            authorization = headers.get("Authorization") or ""
            key = authorization[len("Bearer ") :] if authorization.startswith("Bearer ") else None
        if key is None:
            raise errors.AuthError(401, "Must provide an API key or an Authorization bearer token")
        can_write = self._eq(self.read_write, key)
        can_read = self._eq(self.read_only, key)
        if read_only and (can_read or can_write):
            return
        if not read_only:
            if can_write:
                return
            if can_read:
                raise errors.AuthError(403, "Write access denied")
        raise errors.AuthError(401, "Invalid API key or JWT")


class QdrantHTTPServer(ThreadingHTTPServer):
    """Threading server carrying the API object."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, config: ServerConfig, api: QdrantApi) -> None:
        self.config = config
        self.api = api
        self.auth = AuthKeys(config.api_key, config.read_only_api_key)
        super().__init__((config.host, config.port), QdrantRequestHandler)


class QdrantRequestHandler(BaseHTTPRequestHandler):
    """Dispatches one request to :class:`QdrantApi`."""

    protocol_version = "HTTP/1.1"
    server_version = "qdrant-test-server"
    server: QdrantHTTPServer

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        if not self.server.config.quiet:
            super().log_message(format, *args)

    def do_GET(self) -> None:
        self._dispatch()

    def do_HEAD(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def do_PUT(self) -> None:
        self._dispatch()

    def do_DELETE(self) -> None:
        self._dispatch()

    def do_PATCH(self) -> None:
        self._dispatch()

    # -- dispatch ----------------------------------------------------------------------------

    def _body_reader(self) -> Any:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            return ChunkedReader(self.rfile)
        return LimitedReader(self.rfile, int(self.headers.get("Content-Length") or 0))

    def _find_route(self, path: str) -> Tuple[Optional[Route], dict]:
        for route in self.server.api.routes:
            params = route.match(self.command, path)
            if params is not None:
                return route, params
        return None, {}

    def _dispatch(self) -> None:
        started = time.perf_counter()
        split = urllib.parse.urlsplit(self.path)
        path = split.path
        query = dict(urllib.parse.parse_qsl(split.query, keep_blank_values=True))
        body = self._body_reader()
        route, params = self._find_route(path)
        try:
            self.server.auth.check(path, self.headers, route.read_only if route else False)
        except errors.AuthError as exc:
            self.close_connection = True
            self._send_bytes(exc.status, exc.message.encode("utf-8"), "text/plain; charset=utf-8")
            return
        request = Request(self.command, path, query, self.headers, body, params)
        try:
            response = route.handler(request) if route else Empty()
        except errors.ApiError as exc:
            response = exc
        except Exception as exc:  # report like Qdrant's 500 instead of dropping the connection
            LOG.exception("unhandled error for %s %s", self.command, self.path)
            response = errors.service_error(str(exc))
        try:
            body.drain()
        except errors.ApiError:
            self.close_connection = True
        self._send(response, started)

    # -- responses ---------------------------------------------------------------------------

    def _send(self, response: Any, started: float) -> None:
        elapsed = time.perf_counter() - started
        if isinstance(response, errors.ApiError):
            self._send_json(response.status, {"status": {"error": response.message}, "time": elapsed})
        elif isinstance(response, JsonResult):
            self._send_json(response.status, {"result": response.result, "status": "ok", "time": elapsed})
        elif isinstance(response, Accepted):
            self._send_json(202, {"status": "accepted", "time": elapsed})
        elif isinstance(response, RawJson):
            self._send_json(response.status, response.body)
        elif isinstance(response, Text):
            self._send_bytes(response.status, response.text.encode("utf-8"), "text/plain; charset=utf-8")
        elif isinstance(response, FileDownload):
            self._send_file(response, started)
        else:
            self._send_bytes(getattr(response, "status", 404), b"", None)

    def _send_json(self, status: int, payload: Any) -> None:
        data = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        self._send_bytes(status, data, "application/json")

    def _send_bytes(self, status: int, data: bytes, content_type: Optional[str]) -> None:
        self.send_response(status)
        if content_type:
            self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _byte_range(self, size: int) -> Optional[Tuple[int, int]]:
        header = self.headers.get("Range")
        if not header or not header.startswith("bytes=") or "," in header:
            return None
        first, _sep, last = header[len("bytes=") :].partition("-")
        try:
            if first == "":
                start, end = max(0, size - int(last)), size - 1
            else:
                start, end = int(first), (int(last) if last else size - 1)
        except ValueError:
            return None
        if start >= size or start > end:
            return (-1, -1)
        return start, min(end, size - 1)

    def _send_file(self, download: FileDownload, started: float) -> None:
        fault = self.server.api.faults.take_download_fault() if self.command == "GET" else None
        if fault is not None and fault.download_http_error is not None:
            message = "Service internal error: injected fault: snapshot download failed"
            self._send_json(
                fault.download_http_error, {"status": {"error": message}, "time": time.perf_counter() - started}
            )
            return
        try:
            handle = download.path.open("rb")
        except FileNotFoundError:
            self._send_json(
                404, {"status": {"error": f"Not found: Snapshot {download.filename} not found"}, "time": 0.0}
            )
            return
        with handle:
            size = os.fstat(handle.fileno()).st_size
            byte_range = self._byte_range(size)
            if byte_range == (-1, -1):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{size}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            start, end = byte_range if byte_range else (0, size - 1)
            length = max(0, end - start + 1)
            self.send_response(206 if byte_range else 200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Disposition", f'attachment; filename="{download.filename}"')
            self.send_header("Accept-Ranges", "bytes")
            self.send_header("Last-Modified", email.utils.formatdate(os.fstat(handle.fileno()).st_mtime, usegmt=True))
            if byte_range:
                self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
            self.send_header("Content-Length", str(length))
            self.end_headers()
            if self.command == "HEAD":
                return
            cut_after = fault.download_cut_after if fault is not None else None
            handle.seek(start)
            sent = 0
            while sent < length:
                want = min(_CHUNK, length - sent)
                if cut_after is not None:
                    want = min(want, cut_after - sent)
                    if want <= 0:
                        self._cut_connection()
                        return
                chunk = handle.read(want)
                if not chunk:
                    break
                self.wfile.write(chunk)
                sent += len(chunk)

    def _cut_connection(self) -> None:
        """Drop the connection mid-body (fault injection)."""
        self.close_connection = True
        try:
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
