# -*- coding: utf-8 -*-
# Copyright (c) cclite.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The logical format (``.keys.gz``): SCAN/DUMP/PTTL out, RESTORE ABSTTL back in, versioned line by line."""

from __future__ import annotations

import json
import struct
import time
import typing as t

from ansible_collections.cclite.backup.plugins.module_utils._core._errors import StageError
from ansible_collections.cclite.backup.plugins.module_utils._engines.redis._client import ErrorReply, Session, version_tuple


LOGICAL_MAGIC = b"CCLITE-REDIS-LOGICAL 1\n"
LOGICAL_VERSION = 1
_U32 = struct.Struct(">I")
_I64 = struct.Struct(">q")
_U64 = struct.Struct(">Q")
MAX_LINE = 1024 * 1024


class LogicalWriter:
    """Writes the logical format (documented in the redis_backup module) to a binary sink."""

    def __init__(self, sink: t.BinaryIO, header: t.Mapping[str, t.Any]) -> None:
        self.sink = sink
        self.counts: dict[str, int] = {}
        self.expiring: dict[str, int] = {}
        self.total = 0
        self.db = -1
        sink.write(LOGICAL_MAGIC)
        sink.write(json.dumps(dict(header, format="cclite.backup/redis-logical", version=LOGICAL_VERSION), sort_keys=True).encode() + b"\n")

    def select(self, db: int) -> None:
        self.db = db
        self.sink.write(b"D" + _U32.pack(db))

    def key(self, key: bytes, expire_at_ms: int, payload: bytes) -> None:
        name = "db%d" % self.db
        self.sink.write(b"K" + _U32.pack(len(key)) + key + _I64.pack(expire_at_ms) + _U32.pack(len(payload)))
        self.sink.write(payload)
        self.counts[name] = self.counts.get(name, 0) + 1
        if expire_at_ms >= 0:
            self.expiring[name] = self.expiring.get(name, 0) + 1
        self.total += 1

    def end(self) -> None:
        trailer = {name: {"keys": n, "expires": self.expiring.get(name, 0)} for name, n in self.counts.items()}
        self.sink.write(b"E" + _U64.pack(self.total) + json.dumps(trailer, sort_keys=True).encode() + b"\n")


class LogicalParser:
    """Incremental reader of the logical format: ``feed`` chunks, get records back.

    Records: ``("header", dict)``, ``("db", n)``, ``("key", key, expire_at_ms, payload)``,
    ``("end", total, counts)``. Anything malformed, or data after the end, raises ``ValueError``;
    ``finish`` raises when the end record was never seen (a truncated file).
    """

    def __init__(self) -> None:
        self.buf = bytearray()
        self.pos = 0
        self.state = "magic"
        self.header: dict[str, t.Any] = {}
        self.counts: dict[str, int] = {}
        self.total = 0
        self.db = -1
        self.trailer: dict[str, t.Any] | None = None

    def _line(self) -> bytes | None:
        cut = self.buf.find(b"\n", self.pos)
        if cut < 0:
            if len(self.buf) - self.pos > MAX_LINE:
                raise ValueError("a header line is longer than %d bytes" % MAX_LINE)
            return None
        line = bytes(self.buf[self.pos:cut])
        self.pos = cut + 1
        return line

    def _have(self, n: int) -> bool:
        return len(self.buf) - self.pos >= n

    def feed(self, chunk: bytes) -> list[tuple[t.Any, ...]]:
        self.buf += chunk
        out: list[tuple[t.Any, ...]] = []
        while True:
            record = self._next()
            if record is None:
                break
            out.append(record)
        if self.pos:
            del self.buf[:self.pos]
            self.pos = 0
        return out

    def _next(self) -> tuple[t.Any, ...] | None:
        if self.state == "magic":
            if not self._have(len(LOGICAL_MAGIC)):
                if not LOGICAL_MAGIC.startswith(bytes(self.buf[self.pos:])):
                    raise ValueError("not a cclite.backup logical Redis dump")
                return None
            if bytes(self.buf[self.pos:self.pos + len(LOGICAL_MAGIC)]) != LOGICAL_MAGIC:
                raise ValueError("not a cclite.backup logical Redis dump (or a version this collection cannot read)")
            self.pos += len(LOGICAL_MAGIC)
            self.state = "header"
        if self.state == "header":
            line = self._line()
            if line is None:
                return None
            try:
                self.header = json.loads(line)
            except ValueError as exc:
                raise ValueError("the header is not JSON (%s)" % exc) from None
            self.state = "records"
            return ("header", self.header)
        if self.state == "done":
            if self._have(1):
                raise ValueError("data follows the end record")
            return None
        if not self._have(1):
            return None
        kind = self.buf[self.pos:self.pos + 1]
        start = self.pos + 1
        if kind == b"D":
            if not self._have(5):
                return None
            self.db = _U32.unpack_from(self.buf, start)[0]
            self.pos = start + 4
            return ("db", self.db)
        if kind == b"K":
            if not self._have(5):
                return None
            klen = _U32.unpack_from(self.buf, start)[0]
            if not self._have(5 + klen + 12):
                return None
            key = bytes(self.buf[start + 4:start + 4 + klen])
            expire = _I64.unpack_from(self.buf, start + 4 + klen)[0]
            plen = _U32.unpack_from(self.buf, start + 12 + klen)[0]
            if not self._have(17 + klen + plen):
                return None
            payload = bytes(self.buf[start + 16 + klen:start + 16 + klen + plen])
            self.pos = start + 16 + klen + plen
            if self.db < 0:
                raise ValueError("a key comes before any database record")
            name = "db%d" % self.db
            self.counts[name] = self.counts.get(name, 0) + 1
            self.total += 1
            return ("key", key, expire, payload)
        if kind == b"E":
            if not self._have(9):
                return None
            cut = self.buf.find(b"\n", start + 8)
            if cut < 0:
                return None
            total = _U64.unpack_from(self.buf, start)[0]
            try:
                self.trailer = json.loads(bytes(self.buf[start + 8:cut]))
            except ValueError as exc:
                raise ValueError("the end record is not JSON (%s)" % exc) from None
            self.pos = cut + 1
            self.state = "done"
            if total != self.total:
                raise ValueError("the end record counts %d keys, the file holds %d" % (total, self.total))
            counted = {k: v.get("keys") for k, v in (self.trailer or {}).items()}
            if counted != self.counts:
                raise ValueError("the end record's per-database counts differ from the records")
            return ("end", total, self.trailer)
        raise ValueError("unknown record type %r at byte %d" % (bytes(kind), self.pos))

    def finish(self) -> None:
        if self.state != "done":
            raise ValueError("the dump ends before its end record: it is truncated")


class LogicalCheck:
    """Content check for logical dumps: the whole structure parses and the counts agree."""

    def __init__(self) -> None:
        self.parser = LogicalParser()
        self.problem: str | None = None

    def feed(self, chunk: bytes) -> None:
        if self.problem is None:
            try:
                self.parser.feed(chunk)
            except ValueError as exc:
                self.problem = str(exc)

    def result(self) -> str | None:
        if self.problem is None:
            try:
                self.parser.finish()
            except ValueError as exc:
                self.problem = str(exc)
        return self.problem


def payload_rdb_version(payload: bytes) -> int | None:
    """The RDB version a DUMP payload was written with (2 bytes before its 8-byte CRC)."""
    if len(payload) < 10:
        return None
    return struct.unpack_from("<H", payload, len(payload) - 10)[0]


def dump_logical(
    session: Session, sink: t.BinaryIO, databases: t.Iterable[str], header: t.Mapping[str, t.Any], batch: int = 500
) -> dict[str, t.Any]:
    """SCAN every database; DUMP and PEXPIRETIME (PTTL before Redis 7) each key; write records.

    Memory stays constant: one SCAN batch of keys and their payloads at a time. Keys that vanish
    between SCAN and DUMP are skipped and counted.
    """
    writer = LogicalWriter(sink, header)
    v7 = version_tuple(str(header.get("redis_version", "0"))) >= (7,)
    skipped = 0
    version: int | None = None
    for name in databases:
        db = int(name[2:])
        session.call("SELECT", db)
        writer.select(db)
        cursor = b"0"
        while True:
            reply = session.call("SCAN", cursor, "COUNT", batch, timeout=600)
            cursor = t.cast(bytes, reply[0])
            keys = [k for k in reply[1:] if isinstance(k, bytes)]
            if keys:
                now_ms = 0
                if not v7:
                    seconds, micros = session.call("TIME")[:2]
                    now_ms = int(t.cast(bytes, seconds)) * 1000 + int(t.cast(bytes, micros)) // 1000
                replies = session.pipeline(
                    [c for k in keys for c in (("DUMP", k), ("PEXPIRETIME", k) if v7 else ("PTTL", k))], timeout=600
                )
                for key, dumped, ttl in zip(keys, replies[0::2], replies[1::2]):
                    payload = dumped[0] if dumped else None
                    if isinstance(payload, ErrorReply) or isinstance(ttl[0] if ttl else None, ErrorReply):
                        raise StageError("DUMP of a key in db%d failed: %s" % (db, payload if isinstance(payload, ErrorReply) else ttl[0]))
                    if not isinstance(payload, bytes):
                        skipped += 1  # deleted or expired since SCAN returned it
                        continue
                    when = ttl[0] if ttl and isinstance(ttl[0], int) else -1
                    if when == -2:
                        skipped += 1
                        continue
                    expire = (when if v7 else now_ms + when) if when >= 0 else -1
                    writer.key(key, expire, payload)
                    version = version or payload_rdb_version(payload)
            if cursor == b"0":
                break
    writer.end()
    session.call("SELECT", 0)
    return {
        "databases": {name: {"keys": n, "expires": writer.expiring.get(name, 0)} for name, n in writer.counts.items()},
        "keys": writer.total,
        "skipped": skipped,
        "rdb_version": version,
    }


def restore_logical(session: Session, chunks: t.Iterable[bytes], empty: bool, batch: int = 200) -> dict[str, t.Any]:
    """RESTORE every key of a logical dump with ABSTTL, in pipelined batches.

    Into a server known to be empty (``empty``), each key is first restored without REPLACE: a
    BUSYKEY answer then means SCAN returned that key twice during the backup, so it is counted
    as a duplicate and restored again with REPLACE (the later copy wins). Otherwise every
    RESTORE carries REPLACE. A key whose absolute expiry has passed is not created (Redis still
    answers OK). The first other error stops the load and raises.
    """
    parser = LogicalParser()
    pending: list[tuple[int, tuple[t.Any, ...]]] = []  # (database, RESTORE command)
    restored = 0
    stats: dict[str, t.Any] = {"databases": {}, "keys": 0, "duplicates": {}, "expired_on_load": 0}
    now_ms = int(time.time() * 1000)
    db = -1

    def flush() -> None:
        nonlocal restored, pending
        while pending:
            commands: list[tuple[t.Any, ...]] = []
            where: list[int] = []
            db = None
            for command_db, command in pending:
                if command_db != db:
                    commands.append(("SELECT", command_db))
                    where.append(-1)
                    db = command_db
                commands.append(command)
                where.append(command_db)
            retry = []
            for command_db, command, reply in zip(where, commands, session.pipeline(commands, timeout=600)):
                error = reply[0] if reply and isinstance(reply[0], ErrorReply) else None
                if command[0] == "SELECT" or error is None:
                    restored += command[0] == "RESTORE"
                    if error is not None:
                        raise StageError("SELECT %s failed: %s" % (command[1], error.message), stage="redis")
                    continue
                if error.code == "BUSYKEY" and command[-1] != "REPLACE":
                    name = "db%d" % command_db
                    stats["duplicates"][name] = stats["duplicates"].get(name, 0) + 1
                    retry.append((command_db, command + ("REPLACE",)))
                    continue
                raise StageError("RESTORE failed after %d keys were restored: %s" % (restored, error.message), stage="redis")
            pending = retry

    for chunk in chunks:
        try:
            records = parser.feed(chunk)
        except ValueError as exc:
            raise StageError("the dump cannot be read after %d keys: %s" % (restored, exc)) from exc
        for record in records:
            if record[0] == "db":
                db = record[1]
                stats["databases"].setdefault("db%d" % db, {"keys": 0, "expires": 0})
            elif record[0] == "key":
                key, expire, payload = record[1:]
                counts = stats["databases"]["db%d" % db]
                counts["keys"] += 1
                if expire >= 0:
                    counts["expires"] += 1
                    if expire <= now_ms:
                        stats["expired_on_load"] += 1
                command = ("RESTORE", key, max(expire, 0), payload, "ABSTTL")
                pending.append((db, command if empty else command + ("REPLACE",)))
                if len(pending) >= batch:
                    flush()
    try:
        parser.finish()
    except ValueError as exc:
        raise StageError("%s; %d keys were restored before the end" % (exc, restored)) from exc
    flush()
    session.call("SELECT", 0)
    stats["keys"] = restored
    return stats


def expected_after_load(stats: t.Mapping[str, t.Any]) -> dict[str, dict[str, int]]:
    """Per-database counts a logical load should leave: records less the duplicates."""
    return {
        name: {"keys": c["keys"] - stats["duplicates"].get(name, 0), "expires": c["expires"]}
        for name, c in stats["databases"].items()
    }
