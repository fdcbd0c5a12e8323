# -*- coding: utf-8 -*-
# Copyright (c) cclite.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""A small in-process Qdrant stand-in for the unit tests: the HTTP boundary, nothing mocked
inside the collection. Snapshots are small tar files so the tests stay fast; the real flows
run against the full test server (tests/qdrant_server) in the integration target."""

from __future__ import annotations

import hashlib
import http.server
import io
import json
import re
import ssl
import tarfile
import threading
import time
import typing as t
import urllib.parse


def collection_snapshot(name: str, points: int) -> bytes:
    """A tar shaped like a Qdrant collection snapshot (config.json, shard 0)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for member, data in (
            ("config.json", json.dumps({"params": {"vectors": {"size": 4, "distance": "Dot"}}}).encode()),
            ("0/segments/seg.tar", ("%s:%d" % (name, points)).encode() * 300),
            ("0/shard_config.json", b'{"type": "ReplicaSet"}'),
        ):
            info = tarfile.TarInfo(member)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


class FakeQdrant:
    """Collections with a points count, aliases, snapshots and uploads, and fault switches."""

    def __init__(self, api_key: str = "", version: str = "1.19.2", tls: tuple[str, str] | None = None) -> None:
        self.api_key = api_key
        self.version = version
        self.collections: dict[str, int] = {}
        self.aliases: dict[str, str] = {}
        self.snapshots: dict[str | None, dict[str, bytes]] = {}
        self.uploads: list[dict[str, t.Any]] = []
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        self.snapshot_delay = 0.0
        self.wrong_checksum = False
        self.cut_after: int | None = None
        self.error_body = b""
        self.keep_uploads = True
        self.reject_upload: str | None = None  # a collection whose recovery fails after the file was stored
        self.lock = threading.Lock()
        handler = self._handler()
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        scheme = "http"
        if tls is not None:  # (certificate, key) files
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*tls)
            self.httpd.socket = context.wrap_socket(self.httpd.socket, server_side=True)
            scheme = "https"
        self.url = "%s://127.0.0.1:%d" % (scheme, self.httpd.server_address[1])
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()  # noqa
        self.httpd.server_close()

    def add(self, name: str, points: int, aliases: t.Sequence[str] = ()) -> None:
        self.collections[name] = points
        for alias in aliases:
            self.aliases[alias] = name

    def _make_snapshot(self, scope: str | None) -> None:
        if self.snapshot_delay:
            time.sleep(self.snapshot_delay)
        stamp = time.strftime("%Y-%m-%d-%H-%M-%S")
        if scope is None:
            buffer = io.BytesIO()
            mapping = {}
            with tarfile.open(fileobj=buffer, mode="w") as tar:
                for name, points in sorted(self.collections.items()):
                    inner = "%s-1-%s.snapshot" % (name, stamp)
                    mapping[name] = inner
                    data = collection_snapshot(name, points)
                    with self.lock:  # like the test server, keep the collection snapshots packed
                        self.snapshots.setdefault(name, {})[inner] = data
                    info = tarfile.TarInfo(inner)
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))
                config = json.dumps({"collections_mapping": mapping, "collections_aliases": self.aliases}).encode()
                info = tarfile.TarInfo("config.json")
                info.size = len(config)
                tar.addfile(info, io.BytesIO(config))
            name, data = "full-snapshot-%s.snapshot" % stamp, buffer.getvalue()
        else:
            name, data = "%s-1-%s.snapshot" % (scope, stamp), collection_snapshot(scope, self.collections[scope])
        with self.lock:
            self.snapshots.setdefault(scope, {})[name] = data

    def describe(self, scope: str | None) -> list[dict[str, t.Any]]:
        out = []
        for name, data in sorted(self.snapshots.get(scope, {}).items()):
            checksum = hashlib.sha256(data).hexdigest()
            if self.wrong_checksum:
                checksum = checksum[:-1] + ("0" if checksum[-1] != "0" else "1")
            out.append({"name": name, "creation_time": "2026-01-01T00:00:00", "size": len(data), "checksum": checksum})
        return out

    def _handler(self) -> type:
        fake = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: t.Any) -> None:
                pass

            def _send(self, status: int, body: t.Any, content_type: str = "application/json") -> None:
                data = body if isinstance(body, bytes) else json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _ok(self, result: t.Any) -> None:
                self._send(200, {"result": result, "status": "ok", "time": 0.001})

            def _error(self, status: int, message: str) -> None:
                self._send(status, {"status": {"error": message}, "time": 0.001})

            def _route(self, method: str) -> None:
                parsed = urllib.parse.urlsplit(self.path)
                query = dict(urllib.parse.parse_qsl(parsed.query))
                path = parsed.path
                fake.requests.append((method, path, {k.lower(): v for k, v in self.headers.items()}))
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                if path != "/" and fake.api_key and self.headers.get("api-key") != fake.api_key:
                    # Qdrant answers in plain text; this one echoes the key it got, to prove we redact
                    return self._send(401, b"Invalid API key or JWT: " + (self.headers.get("api-key") or "").encode() + fake.error_body, "text/plain")
                if path == "/":
                    return self._send(200, {"title": "qdrant - vector search engine", "version": fake.version, "commit": "0"})
                if path == "/collections":
                    return self._ok({"collections": [{"name": n} for n in sorted(fake.collections)]})
                if path == "/aliases":
                    return self._ok({"aliases": [{"alias_name": a, "collection_name": c} for a, c in sorted(fake.aliases.items())]})
                if path == "/collections/aliases" and method == "POST":
                    for action in json.loads(body)["actions"]:
                        if "delete_alias" in action:
                            fake.aliases.pop(action["delete_alias"]["alias_name"])
                        else:
                            fake.aliases[action["create_alias"]["alias_name"]] = action["create_alias"]["collection_name"]
                    return self._ok(True)
                match = re.fullmatch(r"(?:/collections/([^/]+))?/snapshots(?:/([^/]+))?", path)
                if match:
                    scope = urllib.parse.unquote(match.group(1)) if match.group(1) else None
                    name = urllib.parse.unquote(match.group(2)) if match.group(2) else None
                    return self._snapshots(method, scope, name, query, body)
                match = re.fullmatch(r"/collections/([^/]+)(/points/count)?", path)
                if match:
                    name = urllib.parse.unquote(match.group(1))
                    if name not in fake.collections:
                        return self._error(404, "Not found: Collection `%s` doesn't exist!" % name)
                    if match.group(2):
                        return self._ok({"count": fake.collections[name]})
                    return self._ok({"points_count": fake.collections[name],
                                     "config": {"params": {"vectors": {"size": 4, "distance": "Dot"}}}})
                return self._error(404, "no route")

            def _snapshots(self, method: str, scope: str | None, name: str | None, query: dict, body: bytes) -> None:
                if method == "GET" and name is None:
                    return self._ok(fake.describe(scope))
                if method == "POST" and name is None:
                    if query.get("wait") == "false":
                        if fake.snapshot_delay:  # finishes later: seen only by polling the list
                            threading.Thread(target=fake._make_snapshot, args=(scope,), daemon=True).start()
                        else:
                            fake._make_snapshot(scope)
                        return self._send(202, {"status": "accepted", "time": 0.0})
                    fake._make_snapshot(scope)
                    return self._ok(fake.describe(scope)[-1])
                if method == "POST" and name == "upload":
                    boundary = self.headers["Content-Type"].split("boundary=", 1)[1].encode()
                    head, _sep, rest = body.partition(b"\r\n\r\n")
                    data = rest[: -len(b"\r\n--" + boundary + b"--\r\n")]
                    filename = re.search(rb'filename="([^"]*)"', head).group(1).decode()
                    fake.uploads.append({"scope": scope, "query": query, "filename": filename, "data": data,
                                         "head": head, "tail": rest[len(data):]})
                    if hashlib.sha256(data).hexdigest() != query.get("checksum"):
                        return self._error(400, "Checksum mismatch")
                    if fake.keep_uploads:
                        fake.snapshots.setdefault(scope, {})[filename] = data
                    if scope == fake.reject_upload:
                        return self._error(400, "Wrong input: Snapshot is not compatible with existing collection")
                    fake.collections[scope] = fake.points_in(data)
                    return self._ok(True)
                snaps = fake.snapshots.get(scope, {})
                if name not in snaps:
                    return self._error(404, "Snapshot %s not found" % name)
                if method == "DELETE":
                    del snaps[name]
                    return self._ok(True)
                data = snaps[name]
                self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if fake.cut_after is not None:
                    self.wfile.write(data[: fake.cut_after])
                    self.wfile.flush()
                    self.close_connection = True
                    return None
                self.wfile.write(data)
                return None

            def do_GET(self) -> None:
                self._route("GET")

            def do_POST(self) -> None:
                self._route("POST")

            def do_PUT(self) -> None:
                self._route("PUT")

            def do_DELETE(self) -> None:
                self._route("DELETE")

        return Handler

    @staticmethod
    def points_in(snapshot: bytes) -> int:
        """The points count a snapshot made by :func:`collection_snapshot` holds."""
        with tarfile.open(fileobj=io.BytesIO(snapshot)) as tar:
            member = tar.extractfile("0/segments/seg.tar")
            assert member is not None
            found = re.match(rb"[^:]*:(\d+)", member.read())
            assert found is not None
            return int(found.group(1))
