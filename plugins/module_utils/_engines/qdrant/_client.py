# -*- coding: utf-8 -*-
# Copyright (c) cclite.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Qdrant engine: a REST client on ansible's ``open_url``, the snapshot bundle, and its checks.

Everything goes through Qdrant's REST API (``GET /``, collections, aliases, snapshots). The
API key travels in the ``api-key`` header only; every message that could carry it is redacted.
Snapshots stream in chunks both ways (download to a file, upload as a multipart body read
from a file or a tar member), so memory stays constant whatever their size.

A backup is a *bundle*: an uncompressed tar stream (compressed by the artifact writer) with
one member per collection snapshot (``collections/<name>.snapshot``) or one full-storage
snapshot (``full/<name>``), and a ``manifest.json`` member last (server version, per
collection: points count, vectors config, aliases, snapshot name, sha256 and size). The
manifest comes last because it records the sha256 of snapshots that are downloaded one at a
time while the tar is written.
"""

from __future__ import annotations

import dataclasses
import hashlib
import http.client
import importlib
import json
import os
import re
import socket
import ssl
import tarfile
import threading
import time
import typing as t
import urllib.error
import urllib.parse
import uuid

from ansible.module_utils.urls import Request, make_context

from ansible_collections.cclite.backup.plugins.module_utils._core._errors import ConfigError, StageError, VerifyError
from ansible_collections.cclite.backup.plugins.module_utils._core._process import redact, redacted_tail

CHUNK = 1024 * 1024
USER_AGENT = "cclite.backup"
BUNDLE_SCHEMA = "cclite.backup/qdrant-bundle"
MANIFEST_MEMBER = "manifest.json"
MANIFEST_LIMIT = 64 * 1024 * 1024  # a manifest larger than this is not ours
COLLECTIONS_DIR = "collections/"
FULL_DIR = "full/"
KIND_COLLECTIONS = "collections"
KIND_FULL = "full"


# -- connection ----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Connection:
    """Where the Qdrant server is, how to authenticate, and how long to wait."""

    url: str = "http://localhost:6337"
    api_key: str = ""
    ca_cert: str = ""
    validate_certs: bool = True
    timeout: float = 60.0  # one request (connect, or a pause inside a transfer)
    snapshot_timeout: float = 1800.0  # a snapshot to appear, or an upload to be recovered

    def base(self) -> str:
        parsed = urllib.parse.urlsplit(self.url.strip())
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise ConfigError("url %r is not an http:// or https:// URL of the Qdrant server (for example http://localhost:6337)" % self.url)
        if parsed.username or parsed.password:
            raise ConfigError("url must not carry credentials: put the key in api_key (qdrant_backup_api_key)")
        return urllib.parse.urlunsplit((parsed.scheme, parsed.netloc, parsed.path.rstrip("/"), "", ""))

    def secrets(self) -> list[str]:
        return [self.api_key] if self.api_key else []

    def describe(self) -> str:
        return "Qdrant at %s" % redact(self.url, self.secrets())


def connection_argument_spec() -> dict[str, t.Any]:
    """Connection options shared by every Qdrant module (doc fragment cclite.backup.qdrant)."""
    return {
        "url": {"type": "str", "default": "http://localhost:6337"},
        "api_key": {"type": "str", "default": "", "no_log": True},
        "ca_cert": {"type": "path", "default": ""},
        "validate_certs": {"type": "bool", "default": True},
        "timeout": {"type": "int", "default": 60},
        "snapshot_timeout": {"type": "int", "default": 1800},
    }


def connection_from(params: t.Mapping[str, t.Any]) -> Connection:
    conn = Connection(**{name: params[name] for name in connection_argument_spec()})
    conn.base()  # bad URLs fail before anything else
    if conn.ca_cert and not os.path.isfile(conn.ca_cert):
        raise ConfigError("ca_cert %s does not exist on the managed host: copy the CA bundle there first" % conn.ca_cert)
    return conn


# -- errors --------------------------------------------------------------------------------


class HttpError(StageError):
    """The server answered with an error status."""

    def __init__(self, msg: str, status: int) -> None:
        super().__init__(msg)
        self.status = status


def _server_error_text(body: bytes, secrets: t.Sequence[str]) -> str:
    """Qdrant's ``{"status": {"error": ...}}`` message, or the plain-text body."""
    try:
        data = json.loads(body.decode("utf-8"))
        error = data.get("status", {}).get("error") if isinstance(data, dict) and isinstance(data.get("status"), dict) else None
        if error:
            return redact(str(error), secrets)
    except (ValueError, UnicodeDecodeError):
        pass
    return redacted_tail(body, secrets, 1024) or "(no details)"


def http_error_message(conn: Connection, method: str, path: str, status: int, body: bytes) -> str:
    """A sentence for an HTTP error status, with the fix for the ones people meet first."""
    detail = _server_error_text(body, conn.secrets())
    what = "%s %s %s answered %d: %s" % (conn.describe(), method, path, status, detail)
    if status == 401:
        if conn.api_key:
            return what + " (the API key was refused: set api_key / qdrant_backup_api_key to the server's service.api_key; the key is never shown)"
        return what + " (the server requires an API key: set api_key / qdrant_backup_api_key, vaulted)"
    if status == 403:
        return what + " (the API key may only read: backups and restores need the read-write service.api_key, not the read-only one)"
    return what


def connection_error_message(conn: Connection, reason: t.Any) -> str:
    """A sentence for a failure to reach the server at all."""
    where = conn.describe()
    text = redact(str(reason), conn.secrets())
    if isinstance(reason, ConnectionRefusedError) or "Connection refused" in text:
        return (
            "cannot connect to %s: connection refused. Is Qdrant running and listening there? Check url "
            "(qdrant_backup_url; the guide's QDRANT_PORT is 6337) and try curl %s/healthz on the managed host"
            % (where, redact(conn.url.rstrip("/"), conn.secrets()))
        )
    if isinstance(reason, socket.gaierror):
        return "cannot resolve the host of %s (%s): check url (qdrant_backup_url)" % (where, text)
    if isinstance(reason, ssl.SSLCertVerificationError) or "CERTIFICATE_VERIFY_FAILED" in text:
        return (
            "the TLS certificate of %s could not be verified (%s): set ca_cert (qdrant_backup_ca_cert) to the CA "
            "bundle that signed it; validate_certs: false is for test servers only" % (where, text)
        )
    if "WRONG_VERSION_NUMBER" in text or "record layer failure" in text:
        return "TLS failed with %s (%s): does the server speak https? check the scheme of url" % (where, text)
    if isinstance(reason, (socket.timeout, TimeoutError)) or "timed out" in text:
        return "%s did not answer within %s seconds (timeout / qdrant_backup_timeout): is the server overloaded or the address wrong?" % (where, conn.timeout)
    return "cannot reach %s: %s" % (where, text)


# -- client --------------------------------------------------------------------------------


SAMPLE_POINTS = 3  # points per collection recorded in a backup's manifest, compared by a restore drill


def quote(name: str) -> str:
    return urllib.parse.quote(name, safe="")


def snapshots_path(collection: str | None) -> str:
    """Where the snapshots of a collection live, or the full-storage ones for ``None``."""
    return "/collections/%s/snapshots" % quote(collection) if collection is not None else "/snapshots"


class Client:
    """The few REST calls the backup needs, on ``ansible.module_utils.urls.Request`` (what
    ``open_url`` uses), with one TLS context for all of them."""

    def __init__(self, conn: Connection, poll_interval: float = 0.5) -> None:
        self.conn = conn
        self.base = conn.base()
        self.poll_interval = poll_interval
        self._http: t.Any = None

    def _session(self) -> t.Any:
        if self._http is None:
            try:
                context = make_context(cafile=self.conn.ca_cert or None, validate_certs=self.conn.validate_certs)
            except (OSError, ssl.SSLError) as exc:
                raise ConfigError("cannot load the CA bundle %s: %s" % (self.conn.ca_cert, exc)) from None
            self._http = Request(
                validate_certs=self.conn.validate_certs,
                http_agent=USER_AGENT,
                use_netrc=False,
                decompress=False,
                context=context,
            )
        return self._http

    def _headers(self, extra: t.Mapping[str, str] | None = None) -> dict[str, str]:
        headers = {"Accept": "application/json"}
        if self.conn.api_key:
            headers["api-key"] = self.conn.api_key
        headers.update(extra or {})
        return headers

    def open(
        self,
        method: str,
        path: str,
        query: t.Mapping[str, str] | None = None,
        body: t.Any = None,
        headers: t.Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> t.Any:
        """Send one request; the response object on 2xx, else a :class:`StageError` that says why."""
        url = self.base + path + ("?" + urllib.parse.urlencode(query) if query else "")
        try:
            return self._session().open(method, url, data=body, headers=self._headers(headers), timeout=timeout or self.conn.timeout)
        except urllib.error.HTTPError as exc:
            try:
                data = exc.read(64 * 1024) or b""
            except (OSError, http.client.HTTPException):
                data = b""
            raise HttpError(http_error_message(self.conn, method, path, exc.code, data), exc.code) from None
        except urllib.error.URLError as exc:
            raise StageError(connection_error_message(self.conn, exc.reason)) from None
        except (OSError, http.client.HTTPException) as exc:
            raise StageError(connection_error_message(self.conn, exc)) from None

    def call(
        self,
        method: str,
        path: str,
        query: t.Mapping[str, str] | None = None,
        payload: t.Any = None,
        timeout: float | None = None,
    ) -> t.Any:
        """A JSON request; returns ``result`` of Qdrant's envelope (or the whole body without one)."""
        body = json.dumps(payload).encode("utf-8") if payload is not None else None
        headers = {"Content-Type": "application/json"} if body is not None else {}
        response = self.open(method, path, query, body, headers, timeout)
        return self._json(response, method, path)

    def _json(self, response: t.Any, method: str, path: str) -> t.Any:
        try:
            with response:
                raw = response.read()
            data = json.loads(raw.decode("utf-8")) if raw else None
        except (OSError, http.client.HTTPException) as exc:
            raise StageError(connection_error_message(self.conn, exc)) from None
        except (ValueError, UnicodeDecodeError):
            raise StageError(
                "%s %s %s did not answer with JSON: is url the Qdrant REST port (not gRPC, not a proxy page)?"
                % (self.conn.describe(), method, path)
            ) from None
        if isinstance(data, dict) and "result" in data:
            return data["result"]
        return data

    # service ---------------------------------------------------------------------------------

    def server(self) -> dict[str, t.Any]:
        """``GET /``: title, version and commit."""
        info = self.call("GET", "/")
        if not isinstance(info, dict) or not info.get("version"):
            raise StageError("%s does not look like Qdrant: GET / has no version" % self.conn.describe())
        return {k: info.get(k) for k in ("title", "version", "commit")}

    def collections(self) -> list[str]:
        return sorted(c["name"] for c in self.call("GET", "/collections")["collections"])

    def aliases(self) -> dict[str, str]:
        """Every alias and the collection it points to."""
        return {a["alias_name"]: a["collection_name"] for a in self.call("GET", "/aliases")["aliases"]}

    def collection(self, name: str) -> dict[str, t.Any]:
        return self.call("GET", "/collections/%s" % quote(name))

    def count(self, name: str) -> int:
        return int(self.call("POST", "/collections/%s/points/count" % quote(name), payload={"exact": True})["count"])

    def update_aliases(self, actions: list[dict[str, t.Any]]) -> None:
        self.call("POST", "/collections/aliases", payload={"actions": actions})

    def sample(self, name: str, limit: int = SAMPLE_POINTS) -> list[dict[str, t.Any]]:
        """The first ``limit`` points of a collection (scroll order: by id), as :func:`point_digest`."""
        reply = self.call("POST", "/collections/%s/points/scroll" % quote(name),
                          payload={"limit": limit, "with_payload": True, "with_vector": True})
        return [point_digest(p) for p in (reply or {}).get("points") or []]

    def points(self, name: str, ids: t.Sequence[t.Any]) -> dict[t.Any, dict[str, t.Any]]:
        """The points ``ids`` of a collection (those that exist), by id, as :func:`point_digest`."""
        reply = self.call("POST", "/collections/%s/points" % quote(name),
                          payload={"ids": list(ids), "with_payload": True, "with_vector": True})
        return {p["id"]: point_digest(p) for p in reply or []}

    # snapshots -------------------------------------------------------------------------------

    def snapshots(self, collection: str | None) -> list[dict[str, t.Any]]:
        return list(self.call("GET", snapshots_path(collection)) or [])

    def create_snapshot(
        self, collection: str | None, cancel: threading.Event | None = None, started: t.Callable[[], None] | None = None,
    ) -> dict[str, t.Any]:
        """Create a snapshot with ``wait=false`` and poll the list until it is there with its
        checksum, at most ``snapshot_timeout`` seconds. Returns its description. ``started`` is
        called once the server took the request (the snapshot's point in time is then fixed)."""
        known = {s["name"] for s in self.snapshots(collection)}
        result = self.call("POST", snapshots_path(collection), query={"wait": "false"})
        if started is not None:
            started()
        if isinstance(result, dict) and result.get("name") and result.get("checksum"):
            return result  # a server that ignores wait=false answers with the snapshot
        what = "collection %s" % collection if collection is not None else "the full storage"
        deadline = time.monotonic() + self.conn.snapshot_timeout
        delay = self.poll_interval
        while True:
            fresh = [s for s in self.snapshots(collection) if s["name"] not in known and s.get("checksum")]
            if fresh:
                return max(fresh, key=lambda s: (s.get("creation_time") or "", s["name"]))
            if time.monotonic() >= deadline:
                raise StageError(
                    "%s did not finish the snapshot of %s within %s seconds (snapshot_timeout / "
                    "qdrant_backup_snapshot_timeout); no backup was written. The snapshot may still appear on "
                    "the server: list it with GET %s and delete it"
                    % (self.conn.describe(), what, self.conn.snapshot_timeout, snapshots_path(collection))
                )
            if cancel is not None and cancel.wait(delay):
                raise StageError("the snapshot of %s was abandoned: the backup stopped" % what)
            if cancel is None:
                time.sleep(delay)
            delay = min(delay * 1.5, 5.0)

    def delete_snapshot(self, collection: str | None, name: str) -> None:
        self.call("DELETE", "%s/%s" % (snapshots_path(collection), quote(name)), query={"wait": "true"})

    def download(
        self, collection: str | None, snapshot: t.Mapping[str, t.Any], out: t.BinaryIO, cancel: threading.Event | None = None
    ) -> tuple[int, str]:
        """Stream a snapshot into ``out`` in chunks; check its length and sha256 against what
        the server says. Returns size and sha256."""
        name = snapshot["name"]
        path = "%s/%s" % (snapshots_path(collection), quote(name))
        digest = hashlib.sha256()
        size = 0
        response = self.open("GET", path, headers={"Accept": "application/octet-stream"})
        with response:
            length = response.headers.get("Content-Length")
            try:
                while True:
                    if cancel is not None and cancel.is_set():
                        raise StageError("the download of %s was abandoned: the backup stopped" % name)
                    chunk = response.read(CHUNK)
                    if not chunk:
                        break
                    out.write(chunk)
                    digest.update(chunk)
                    size += len(chunk)
            except (OSError, http.client.HTTPException) as exc:
                raise StageError(
                    "the download of snapshot %s from %s broke after %d bytes (%s); nothing was written"
                    % (name, self.conn.describe(), size, redact(str(exc) or type(exc).__name__, self.conn.secrets()))
                ) from None
        expected = int(length) if length is not None and length.isdigit() else snapshot.get("size")
        if expected is not None and size != int(expected):
            raise StageError(
                "the download of snapshot %s from %s ended after %d of %d bytes: the connection was cut; nothing was written"
                % (name, self.conn.describe(), size, int(expected))
            )
        sha256 = digest.hexdigest()
        checksum = snapshot.get("checksum")
        if checksum and sha256 != checksum.lower():
            raise StageError(
                "snapshot %s downloaded from %s has sha256 %s, but the server's checksum is %s: the file on the "
                "server or the transfer is corrupt; nothing was written" % (name, self.conn.describe(), sha256, checksum)
            )
        return size, sha256

    def upload(self, collection: str, stream: t.BinaryIO, size: int, filename: str, sha256: str) -> t.Any:
        """Recover ``collection`` from a snapshot read from ``stream`` (multipart upload,
        ``priority=snapshot`` sent explicitly, the server checks ``checksum``)."""
        body = MultipartBody("snapshot", filename, stream, size)
        return self._json(
            self.open(
                "POST",
                "%s/upload" % snapshots_path(collection),
                query={"priority": "snapshot", "checksum": sha256, "wait": "true"},
                body=body,
                headers={"Content-Type": body.content_type, "Content-Length": str(body.length)},
                timeout=max(self.conn.snapshot_timeout, self.conn.timeout),
            ),
            "POST",
            "%s/upload" % snapshots_path(collection),
        )


# -- multipart upload body ----------------------------------------------------------------


class MultipartBody:
    """A ``multipart/form-data`` body with one file field, read from a stream of known size.

    ``http.client`` sends an object with ``read()`` block by block, so the snapshot is never
    held in memory; ``length`` goes into ``Content-Length``.
    """

    def __init__(self, field: str, filename: str, stream: t.BinaryIO, size: int, boundary: str = "") -> None:
        self.boundary = boundary or "cclite-%s" % uuid.uuid4().hex
        safe_name = re.sub(r'["\\\r\n]', "_", filename)
        self._head = (
            "--%s\r\nContent-Disposition: form-data; name=\"%s\"; filename=\"%s\"\r\n"
            "Content-Type: application/octet-stream\r\n\r\n" % (self.boundary, field, safe_name)
        ).encode("utf-8")
        self._tail = ("\r\n--%s--\r\n" % self.boundary).encode("ascii")
        self._stream = stream
        self._size = size
        self._left = size
        self._pos = 0  # position in head, then in tail
        self._part = 0  # 0 head, 1 file, 2 tail, 3 done
        self.length = len(self._head) + size + len(self._tail)
        self.content_type = "multipart/form-data; boundary=%s" % self.boundary

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            size = self.length
        out = bytearray()
        while len(out) < size and self._part < 3:
            want = size - len(out)
            if self._part == 0:
                out += self._head[self._pos:self._pos + want]
                self._pos += want
                if self._pos >= len(self._head):
                    self._part, self._pos = 1, 0
            elif self._part == 1:
                if self._left == 0:
                    self._part = 2
                    continue
                data = self._stream.read(min(want, self._left))
                if not data:
                    raise StageError(
                        "the snapshot ended after %d of %d bytes while uploading it" % (self._size - self._left, self._size)
                    )
                out += data
                self._left -= len(data)
            else:
                out += self._tail[self._pos:self._pos + want]
                self._pos += want
                if self._pos >= len(self._tail):
                    self._part = 3
        return bytes(out)


# -- versions ------------------------------------------------------------------------------


def parse_version(text: str) -> tuple[int, int, int]:
    match = re.match(r"v?(\d+)\.(\d+)(?:\.(\d+))?", (text or "").strip())
    if not match:
        raise ConfigError("cannot read the Qdrant version %r" % text)
    return int(match.group(1)), int(match.group(2)), int(match.group(3) or 0)


def version_problem(backup: str, server: str) -> str | None:
    """Why a snapshot made by Qdrant ``backup`` cannot be restored onto Qdrant ``server``, or None.

    Qdrant restores a snapshot on the same or the next minor version only.
    """
    made, target = parse_version(backup), parse_version(server)
    if target < made:
        return (
            "the server runs Qdrant %s, older than %s that made the backup: Qdrant cannot load snapshots "
            "of a newer version. Restore onto Qdrant %d.%d (%s or later) or %d.%d"
            % (server, backup, made[0], made[1], backup, made[0], made[1] + 1)
        )
    if target[0] != made[0] or target[1] > made[1] + 1:
        return (
            "the server runs Qdrant %s, more than one minor version newer than %s that made the backup: "
            "snapshots restore only on the same or the next minor version. Restore onto Qdrant %d.%d or %d.%d, "
            "then upgrade one minor version at a time" % (server, backup, made[0], made[1], made[0], made[1] + 1)
        )
    return None


# -- reading a bundle ----------------------------------------------------------------------


class ChunkStream:
    """A read-only file object over an iterator of byte chunks (for ``tarfile`` stream mode)."""

    def __init__(self, chunks: t.Iterable[bytes]) -> None:
        self._chunks = iter(chunks)
        self._buffer = b""
        self._offset = 0

    def read(self, size: int = -1) -> bytes:
        parts = []
        wanted = size if size is not None and size >= 0 else None
        while wanted is None or wanted > 0:
            if self._offset >= len(self._buffer):
                try:
                    self._buffer, self._offset = next(self._chunks), 0
                except StopIteration:
                    break
                continue
            end = len(self._buffer) if wanted is None else min(len(self._buffer), self._offset + wanted)
            parts.append(self._buffer[self._offset:end])
            if wanted is not None:
                wanted -= end - self._offset
            self._offset = end
        return b"".join(parts)


def canonical_sha256(value: t.Any) -> str:
    """sha256 of ``value`` in a canonical JSON form (sorted keys, no spaces, UTF-8)."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def point_digest(point: t.Mapping[str, t.Any]) -> dict[str, t.Any]:
    """A point of a sample: its id and the sha256 of its vector(s) and of its payload, each in
    canonical JSON (the values themselves are never kept: a payload may hold personal data)."""
    return {"id": point.get("id"), "vector": canonical_sha256(point.get("vector")), "payload": canonical_sha256(point.get("payload") or {})}


def member_name(collection: str) -> str:
    return COLLECTIONS_DIR + collection + ".snapshot"


def count_range(entry: t.Mapping[str, t.Any]) -> tuple[int, int] | None:
    """The points counts a collection may have after a restore: the count read before its
    snapshot, and after it when writes happened meanwhile."""
    counts = [entry.get(k) for k in ("points_count", "points_count_after") if isinstance(entry.get(k), int)]
    return (min(counts), max(counts)) if counts else None


def count_problem(entry: t.Mapping[str, t.Any], actual: int) -> str | None:
    expected = count_range(entry)
    if expected is None or expected[0] <= actual <= expected[1]:
        return None
    said = str(expected[0]) if expected[0] == expected[1] else "%d to %d" % expected
    return "collection %s has %d points, the backup recorded %s" % (entry.get("name"), actual, said)


def check_manifest(data: t.Any) -> dict[str, t.Any]:
    """The bundle's inner manifest, checked for the fields every reader relies on."""
    if not isinstance(data, dict) or data.get("schema") != BUNDLE_SCHEMA:
        raise VerifyError("manifest.json is not a cclite.backup Qdrant bundle manifest")
    if data.get("kind") not in (KIND_COLLECTIONS, KIND_FULL) or not isinstance(data.get("collections"), list):
        raise VerifyError("manifest.json has no kind or no collections list")
    for entry in data["collections"]:
        if not isinstance(entry, dict) or not all(entry.get(k) for k in ("name", "member", "sha256")):
            raise VerifyError("manifest.json lists a collection without name, member or sha256")
    if data["kind"] == KIND_FULL and not isinstance(data.get("full_snapshot"), dict):
        raise VerifyError("manifest.json of a full-storage bundle has no full_snapshot")
    return data


class TarReader:
    """Push parser of a tar stream: ``feed`` it chunks, it calls ``on_file(name, size)`` for
    every regular file and feeds that file's data to the sink it returns (or skips it).

    Constant memory: one 512-byte header and, for long names, a bounded extended header.
    Understands ustar, GNU long names and pax headers (what ``tarfile`` writes).
    """

    EXT_LIMIT = 1024 * 1024

    def __init__(self, on_file: t.Callable[[str, int], t.Any], what: str = "the tar stream") -> None:
        self.on_file = on_file
        self.what = what
        self.error: str | None = None
        self.ended = False
        self.current: str | None = None  # the member whose data is being read
        self._header = bytearray()
        self._left = 0  # data bytes of the current member
        self._pad = 0
        self._sink: t.Any = None
        self._ext: bytearray | None = None  # data of a long-name or pax header
        self._ext_type = b""
        self._next_name: str | None = None
        self._next_size: int | None = None

    def feed(self, data: bytes) -> None:
        view = memoryview(data)
        pos = 0
        while pos < len(view) and self.error is None:
            if self._left:
                n = min(self._left, len(view) - pos)
                piece = view[pos:pos + n]
                if self._ext is not None:
                    self._ext += piece
                elif self._sink is not None:
                    self._sink.update(bytes(piece))
                self._left -= n
                pos += n
                if not self._left:
                    self._member_done()
            elif self._pad:
                n = min(self._pad, len(view) - pos)
                self._pad -= n
                pos += n
            else:
                n = min(tarfile.BLOCKSIZE - len(self._header), len(view) - pos)
                self._header += view[pos:pos + n]
                pos += n
                if len(self._header) == tarfile.BLOCKSIZE:
                    block = bytes(self._header)
                    self._header.clear()
                    self._block(block)

    def _block(self, block: bytes) -> None:
        if self.ended:
            if block.count(0) != tarfile.BLOCKSIZE:
                self.error = "%s has data after its end-of-archive marker" % self.what
            return
        if block.count(0) == tarfile.BLOCKSIZE:
            self.ended = True
            return
        try:
            info = tarfile.TarInfo.frombuf(block, tarfile.ENCODING, "surrogateescape")
        except tarfile.HeaderError as exc:
            self.error = "%s has a bad tar header (%s): the bundle is damaged" % (self.what, exc)
            return
        size = info.size
        if info.type in (tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK, tarfile.XHDTYPE, tarfile.XGLTYPE):
            if size > self.EXT_LIMIT:
                self.error = "%s has an extended header of %d bytes: not a bundle written by cclite.backup" % (self.what, size)
                return
            self._ext, self._ext_type = bytearray(), info.type
        else:
            name = self._next_name if self._next_name is not None else info.name
            if self._next_size is not None:
                size = self._next_size
            self._next_name = self._next_size = None
            self.current = name
            has_data = info.type in tarfile.REGULAR_TYPES or info.type not in tarfile.SUPPORTED_TYPES
            if not has_data:
                size = 0
            self._sink = self.on_file(name, size) if info.type in tarfile.REGULAR_TYPES else None
        self._left = size
        self._pad = -size % tarfile.BLOCKSIZE
        if not size:
            self._member_done()

    def _member_done(self) -> None:
        if self._ext is not None:
            data, kind = bytes(self._ext), self._ext_type
            self._ext = None
            if kind == tarfile.GNUTYPE_LONGNAME:
                self._next_name = data.split(b"\0", 1)[0].decode(tarfile.ENCODING, "surrogateescape")
            elif kind == tarfile.XHDTYPE:
                self._pax(data)
            return
        if self._sink is not None:
            self._sink.close()
        self._sink = None
        self.current = None

    def _pax(self, data: bytes) -> None:
        pos = 0
        while pos < len(data):
            match = re.match(rb"(\d+) ", data[pos:pos + 24])
            if not match or int(match.group(1)) <= 0:
                self.error = "%s has a malformed pax header" % self.what
                return
            record = data[pos + len(match.group(0)):pos + int(match.group(1)) - 1]
            key, _sep, value = record.partition(b"=")
            if key == b"path":
                self._next_name = value.decode("utf-8", "surrogateescape")
            elif key == b"size":
                self._next_size = int(value)
            pos += int(match.group(1))

    def problem(self) -> str | None:
        """What is wrong with the stream so far, once it has all been fed."""
        if self.error:
            return self.error
        if self.current is not None or self._left or self._ext is not None:
            return "%s ends inside member %s: the bundle is truncated" % (self.what, self.current or "(a header)")
        if not self.ended:
            return "%s has no end-of-archive marker: the bundle is truncated" % self.what
        return None


class _Member:
    """Sink of one tar member: size and sha256, and optionally a nested tar or a byte buffer."""

    def __init__(self, nested: TarReader | None = None, keep: bool = False) -> None:
        self.digest = hashlib.sha256()
        self.size = 0
        self.nested = nested
        self.data = bytearray() if keep else None
        self.complete = False
        self.too_large = False

    def update(self, chunk: bytes) -> None:
        self.digest.update(chunk)
        self.size += len(chunk)
        if self.nested is not None:
            self.nested.feed(chunk)
        if self.data is not None:
            if len(self.data) + len(chunk) > MANIFEST_LIMIT:
                self.too_large, self.data = True, None
            else:
                self.data += chunk

    def close(self) -> None:
        self.complete = True

    @property
    def sha256(self) -> str:
        return self.digest.hexdigest()


class BundleCheck:
    """Content check of a Qdrant bundle (see ``_verify.ContentCheck``), fed the decompressed
    artifact: the tar is well formed and complete, the manifest is there, every snapshot the
    manifest lists is present with the size and sha256 the server reported, nothing else is.

    Snapshots inside a full-storage snapshot are hashed on the fly by a nested parser.
    After ``result()``, ``manifest`` holds the inner manifest (the restore reads it here).
    """

    def __init__(self) -> None:
        self.members: dict[str, _Member] = {}
        self.inner: dict[str, dict[str, _Member]] = {}
        self.nested: dict[str, TarReader] = {}
        self.manifest: dict[str, t.Any] | None = None
        self.tar = TarReader(self._on_file, "the bundle's tar stream")

    def _on_file(self, name: str, size: int) -> _Member:
        if name == MANIFEST_MEMBER:
            member = _Member(keep=True)
        elif name.startswith(FULL_DIR):
            found: dict[str, _Member] = {}
            self.inner[name] = found
            reader = TarReader(lambda inner, _size: found.setdefault(inner, _Member()), "the full snapshot %s" % name)
            self.nested[name] = reader
            member = _Member(nested=reader)
        else:
            member = _Member()
        self.members[name] = member
        return member

    def feed(self, chunk: bytes) -> None:
        self.tar.feed(chunk)

    def result(self) -> str | None:
        problems = []
        broken = self.tar.problem()
        if broken:
            return broken
        member = self.members.get(MANIFEST_MEMBER)
        if member is None and is_legacy_bundle(self.members):
            return self._legacy()
        if member is None:
            return "the bundle has no manifest.json: it was not made by cclite.backup, or was cut short"
        if member.data is None:
            return "manifest.json is larger than %d bytes: not a cclite.backup bundle" % MANIFEST_LIMIT
        try:
            manifest = check_manifest(json.loads(bytes(member.data).decode("utf-8")))
        except (ValueError, UnicodeDecodeError) as exc:
            return "manifest.json cannot be read (%s)" % exc
        except VerifyError as exc:
            return exc.msg
        expected = {MANIFEST_MEMBER}
        if manifest["kind"] == KIND_FULL:
            full = manifest["full_snapshot"]
            expected.add(full.get("member"))
            problems += self._compare(full.get("member"), self.members.get(full.get("member")), full)
            nested = self.nested.get(full.get("member"))
            if nested is not None and nested.problem():
                problems.append(t.cast(str, nested.problem()))
            inner = self.inner.get(full.get("member"), {})
            for entry in manifest["collections"]:
                problems += self._compare("%s in %s" % (entry["member"], full.get("member")), inner.get(entry["member"]), entry)
        else:
            for entry in manifest["collections"]:
                expected.add(entry["member"])
                problems += self._compare(entry["member"], self.members.get(entry["member"]), entry)
        extra = sorted(set(self.members) - expected)
        if extra:
            problems.append("the bundle has members its manifest does not list: %s" % ", ".join(extra[:5]))
        self.manifest = manifest
        return "; ".join(problems) or None

    def _legacy(self) -> str | None:
        """A tar of collection snapshots made by the guide's scripts: its manifest is made up
        from the members (each snapshot's size and sha256 as read here)."""
        try:
            manifest = legacy_manifest(list(self.members))
        except VerifyError as exc:
            return exc.msg
        problems = []
        for entry in manifest["collections"]:
            member = self.members[entry["member"]]
            if not member.complete:
                problems.append("snapshot %s is incomplete" % entry["member"])
            entry.update(size=member.size, sha256=member.sha256)
        self.manifest = manifest
        return "; ".join(problems) or None

    @staticmethod
    def _compare(name: str, member: _Member | None, entry: t.Mapping[str, t.Any]) -> list[str]:
        if member is None:
            return ["snapshot %s is missing from the bundle" % name]
        if not member.complete:
            return ["snapshot %s is incomplete" % name]
        if entry.get("size") is not None and member.size != entry["size"]:
            return ["snapshot %s has %d bytes, the manifest says %s" % (name, member.size, entry["size"])]
        if member.sha256 != str(entry.get("sha256")).lower():
            return ["snapshot %s has sha256 %s, the server's checksum was %s" % (name, member.sha256, entry.get("sha256"))]
        return []


# A collection snapshot as Qdrant names it: <collection>-<peer id>-<YYYY-MM-DD-HH-MM-SS>.snapshot
SNAPSHOT_NAME = re.compile(r"(?P<collection>.+)-\d+-\d{4}-\d{2}-\d{2}-\d{2}-\d{2}-\d{2}\.snapshot")
FULL_SNAPSHOT_NAME = re.compile(r"full-snapshot-\d{4}-\d{2}-\d{2}-\d{2}-\d{2}-\d{2}\.snapshot")


def is_legacy_bundle(members: t.Iterable[str]) -> bool:
    """A tar the guide's scripts made (snapshots downloaded, then ``tar -czf``): no manifest.json,
    nothing but ``.snapshot`` files, none where a cclite.backup bundle keeps its snapshots."""
    names = list(members)
    return bool(names) and all(
        n.endswith(".snapshot") and not n.startswith((COLLECTIONS_DIR, FULL_DIR)) and MANIFEST_MEMBER not in n for n in names
    )


def legacy_manifest(members: t.Sequence[str]) -> dict[str, t.Any]:
    """The manifest of a legacy bundle, made up from its member names (no sizes, no checksums,
    no points counts, no aliases: the old scripts recorded none)."""
    collections = []
    for member in members:
        base = member.rsplit("/", 1)[-1]
        if FULL_SNAPSHOT_NAME.fullmatch(base):
            raise VerifyError(
                "%s is a full-storage snapshot: a legacy bundle of one cannot be checked or restored by cclite.backup; "
                "recover it with Qdrant's own snapshot recovery" % member
            )
        match = SNAPSHOT_NAME.fullmatch(base)
        collections.append({"name": match.group("collection") if match else base[: -len(".snapshot")], "member": member, "snapshot": base})
    names = [c["name"] for c in collections]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise VerifyError("the legacy bundle holds several snapshots of collection %s: restore them by hand" % ", ".join(twice))
    return {"schema": BUNDLE_SCHEMA, "kind": KIND_COLLECTIONS, "legacy": True, "server": {}, "collections": collections}


def with_source_counts(manifest: dict[str, t.Any], outer: t.Mapping[str, t.Any] | None) -> dict[str, t.Any]:
    """A legacy bundle's made-up manifest with the points counts its sidecar manifest recorded
    when it was adopted, so restores and deep checks compare against them."""
    counts = ((outer or {}).get("source") or {}).get("collections") or {}
    if manifest.get("legacy"):
        for entry in manifest["collections"]:
            recorded = counts.get(entry["name"]) or {}
            if isinstance(recorded.get("points_count"), int):
                entry["points_count"] = recorded["points_count"]
    return manifest


def read_bundle(
    chunks: t.Iterable[bytes],
    manifest: t.Mapping[str, t.Any],
    wanted: t.Collection[str],
    handle: t.Callable[[t.Mapping[str, t.Any], t.BinaryIO, int], None],
) -> None:
    """Stream a bundle once and call ``handle(entry, stream, size)`` for the snapshot of each
    collection named in ``wanted``, in bundle order (also inside a full-storage snapshot)."""
    by_member = {e["member"]: e for e in manifest["collections"] if e["name"] in wanted}
    full_member = (manifest.get("full_snapshot") or {}).get("member") if manifest["kind"] == KIND_FULL else None
    try:
        with tarfile.open(fileobj=t.cast(t.IO[bytes], ChunkStream(chunks)), mode="r|") as bundle:
            for member in bundle:
                if not member.isfile():
                    continue
                if full_member is not None and member.name == full_member:
                    source = bundle.extractfile(member)
                    with tarfile.open(fileobj=source, mode="r|") as full:
                        for inner in full:
                            if inner.isfile() and inner.name in by_member:
                                handle(by_member[inner.name], t.cast(t.BinaryIO, full.extractfile(inner)), inner.size)
                elif full_member is None and member.name in by_member:
                    handle(by_member[member.name], t.cast(t.BinaryIO, bundle.extractfile(member)), member.size)
    except tarfile.TarError as exc:
        raise VerifyError("the bundle cannot be read as a tar stream (%s)" % exc) from None


def inner_snapshots(path: str) -> tuple[dict[str, tuple[int, str]], dict[str, t.Any]]:
    """Size and sha256 of every file in a full-storage snapshot, and its ``config.json``."""
    files: dict[str, tuple[int, str]] = {}
    config: dict[str, t.Any] = {}
    try:
        with tarfile.open(path, mode="r:") as archive:
            for member in archive:
                if not member.isfile():
                    continue
                source = archive.extractfile(member)
                if source is None:
                    continue
                if member.name == "config.json":
                    config = json.loads(source.read(MANIFEST_LIMIT).decode("utf-8"))
                    continue
                digest = hashlib.sha256()
                for chunk in iter(lambda: source.read(CHUNK), b""):
                    digest.update(chunk)
                files[member.name] = (member.size, digest.hexdigest())
    except (tarfile.TarError, ValueError, UnicodeDecodeError) as exc:
        raise StageError("the full-storage snapshot cannot be read as a tar (%s)" % exc) from None
    return files, config


# -- deep check with Qdrant Edge ------------------------------------------------------------


def edge_module() -> t.Any:
    """``qdrant_edge`` (pip package qdrant-edge-py) when the managed host has it, else None."""
    try:
        return importlib.import_module("qdrant_edge")
    except ImportError:
        return None


def _safe_parts(name: str) -> list[str]:
    parts = [p for p in name.replace("\\", "/").split("/") if p not in ("", ".")]
    if name.startswith("/") or ".." in parts:
        raise VerifyError("the snapshot has an unsafe member name %r" % name)
    return parts


def points_in_snapshot(edge: t.Any, stream: t.BinaryIO, workdir: str) -> int:
    """Load a collection snapshot with Qdrant Edge and count its points.

    Each shard directory (``0/``, ``1/`` ...) is re-packed as a shard snapshot (Edge restores
    shards, not collections), unpacked by ``EdgeShard.unpack_snapshot`` and loaded read-only.
    Needs about twice the snapshot's size in ``workdir``.
    """
    shards: dict[str, tarfile.TarFile] = {}
    try:
        with tarfile.open(fileobj=stream, mode="r|") as snapshot:
            for member in snapshot:
                parts = _safe_parts(member.name)
                if member.issym() or member.islnk():
                    raise VerifyError("the snapshot contains a link (%s)" % member.name)
                if len(parts) < 2 or not parts[0].isdigit():
                    continue
                if parts[0] not in shards:
                    shards[parts[0]] = tarfile.open(os.path.join(workdir, "shard-%s.tar" % parts[0]), "w", format=tarfile.PAX_FORMAT)
                source = snapshot.extractfile(member) if member.isfile() else None
                member.name = "/".join(parts[1:])
                shards[parts[0]].addfile(member, source)
    except tarfile.TarError as exc:
        raise VerifyError("the snapshot is not a readable tar (%s)" % exc) from None
    finally:
        for archive in shards.values():
            archive.close()
    if not shards:
        raise VerifyError("the snapshot has no shard directory")
    total = 0
    for shard_id in sorted(shards):
        archive = os.path.join(workdir, "shard-%s.tar" % shard_id)
        target = os.path.join(workdir, "shard-%s" % shard_id)
        try:
            edge.EdgeShard.unpack_snapshot(archive, target)
            os.unlink(archive)
            shard = edge.EdgeShard.load(target)
            try:
                total += int(shard.count(edge.CountRequest(exact=True)))
            finally:
                shard.close()
        except Exception as exc:  # Qdrant Edge raises plain Exception subclasses
            raise VerifyError("Qdrant Edge cannot load shard %s: %s" % (shard_id, exc)) from None
    return total
