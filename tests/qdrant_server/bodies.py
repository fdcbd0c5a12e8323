"""Streaming request bodies: Content-Length and chunked readers, and a multipart/form-data parser
that writes the uploaded file straight to disk (a snapshot upload is never held in memory).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Dict, Optional, Protocol, Tuple

from . import errors

_CHUNK = 1024 * 1024


class ByteStream(Protocol):
    """What the readers need from the socket file (``BaseHTTPRequestHandler.rfile``)."""

    def read(self, size: int = ...) -> bytes: ...

    def readline(self, size: int = ...) -> bytes: ...


class LimitedReader:
    """Reads at most ``length`` bytes from ``raw``."""

    def __init__(self, raw: ByteStream, length: int) -> None:
        self._raw = raw
        self.remaining = length

    def read(self, size: int = -1) -> bytes:
        if self.remaining <= 0:
            return b""
        want = self.remaining if size < 0 else min(size, self.remaining)
        data = self._raw.read(want)
        self.remaining -= len(data)
        return data

    def drain(self) -> None:
        """Read and drop what is left, so the connection can serve the next request."""
        while self.read(_CHUNK):
            pass


class ChunkedReader:
    """Decodes ``Transfer-Encoding: chunked``."""

    def __init__(self, raw: ByteStream) -> None:
        self._raw = raw
        self._left = 0
        self._done = False

    def _next_chunk(self) -> None:
        line = self._raw.readline(1024)
        try:
            self._left = int(line.split(b";", 1)[0].strip(), 16)
        except ValueError:
            raise errors.ApiError(400, "Payload error: invalid chunk size") from None
        if self._left == 0:
            while self._raw.readline(1024) not in (b"\r\n", b"\n", b""):
                pass
            self._done = True

    def read(self, size: int = -1) -> bytes:
        out = bytearray()
        while not self._done and (size < 0 or len(out) < size):
            if self._left == 0:
                self._next_chunk()
                continue
            want = self._left if size < 0 else min(self._left, size - len(out))
            data = self._raw.read(want)
            if not data:
                raise errors.ApiError(400, "Payload error: incomplete chunked body")
            out += data
            self._left -= len(data)
            if self._left == 0:
                self._raw.readline(1024)
        return bytes(out)

    def drain(self) -> None:
        while self.read(_CHUNK):
            pass


def multipart_boundary(content_type: str) -> str:
    """Boundary of a ``multipart/form-data`` content type."""
    if not content_type.lower().startswith("multipart/form-data"):
        raise errors.ApiError(400, "Multipart error: Content-Type is not multipart/form-data")
    match = re.search(r'boundary="?([^";]+)"?', content_type)
    if not match:
        raise errors.ApiError(400, "Multipart error: multipart boundary is not found")
    return match.group(1)


def _disposition(headers: Dict[str, str]) -> Tuple[Optional[str], Optional[str]]:
    value = headers.get("content-disposition", "")
    name = re.search(r'(?:^|;)\s*name="([^"]*)"', value)
    filename = re.search(r'(?:^|;)\s*filename="([^"]*)"', value)
    return (name.group(1) if name else None, filename.group(1) if filename else None)


class _Scanner:
    def __init__(self, source: Any) -> None:
        self._source = source
        self.buf = b""
        self.eof = False

    def fill(self) -> None:
        data = self._source.read(_CHUNK)
        if data:
            self.buf += data
        else:
            self.eof = True

    def readline(self) -> bytes:
        while b"\r\n" not in self.buf and not self.eof and len(self.buf) < 65536:
            self.fill()
        index = self.buf.find(b"\r\n")
        if index < 0:
            line, self.buf = self.buf, b""
            return line
        line, self.buf = self.buf[:index], self.buf[index + 2 :]
        return line


def save_multipart_file(source: Any, content_type: str, field: str, target: Path, digest: Any) -> Optional[str]:
    """Stream the file of form field ``field`` to ``target``; returns the client's file name.

    ``digest`` (a hashlib object) is updated with the file's bytes on the way.
    """
    boundary = multipart_boundary(content_type).encode("latin-1")
    delimiter = b"--" + boundary
    marker = b"\r\n" + delimiter
    scanner = _Scanner(source)
    line = scanner.readline()
    while line.rstrip() != delimiter:
        if scanner.eof and not scanner.buf:
            raise errors.ApiError(400, "Multipart error: multipart stream is incomplete")
        line = scanner.readline()
    found: Optional[Tuple[Optional[str]]] = None
    while True:
        headers: Dict[str, str] = {}
        while True:
            header = scanner.readline()
            if not header:
                break
            key, _sep, value = header.decode("utf-8", "replace").partition(":")
            headers[key.strip().lower()] = value.strip()
        name, filename = _disposition(headers)
        out = target.open("wb") if name == field and found is None else None
        try:
            while True:
                index = scanner.buf.find(marker)
                if index >= 0:
                    if out is not None:
                        out.write(scanner.buf[:index])
                        digest.update(scanner.buf[:index])
                    scanner.buf = scanner.buf[index + len(marker) :]
                    break
                keep = len(marker) - 1
                if len(scanner.buf) > keep:
                    emit, scanner.buf = scanner.buf[:-keep], scanner.buf[-keep:]
                    if out is not None:
                        out.write(emit)
                        digest.update(emit)
                if scanner.eof:
                    raise errors.ApiError(400, "Multipart error: multipart stream is incomplete")
                scanner.fill()
        finally:
            if out is not None:
                out.close()
        if out is not None:
            found = (filename,)
        while len(scanner.buf) < 2 and not scanner.eof:
            scanner.fill()
        if scanner.buf.startswith(b"--"):
            break
        scanner.readline()
    if found is None:
        raise errors.ApiError(400, f"Multipart error: field `{field}` is required")
    return found[0]
