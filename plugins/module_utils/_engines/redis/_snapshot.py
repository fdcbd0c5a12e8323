# -*- coding: utf-8 -*-
# Copyright (c) cclite.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Redis BGSAVE: start a save, wait for it, find the RDB file, and take a sample of keys to check a restore by."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import re
import time
import typing as t

from ansible_collections.cclite.backup.plugins.module_utils._core import _progress
from ansible_collections.cclite.backup.plugins.module_utils._core._errors import StageError
from ansible_collections.cclite.backup.plugins.module_utils._core._process import run
from ansible_collections.cclite.backup.plugins.module_utils._engines.redis._client import (
    SAMPLE_STRING_LIMIT, Connection, ErrorReply, Item, RdbReplaced, Session, explain, key_record, parse_keyspace,
)


@dataclasses.dataclass
class Snapshot:
    """What was counted at the moment of the fork, and how to recognise our save."""

    saves: int | None  # the rdb_saves value our BGSAVE set (None: a server without the counter)
    databases: dict[str, dict[str, int]]
    exact: bool
    paused_ms: float | None
    sample: list[dict[str, t.Any]]
    notes: list[str]
    started: float = 0.0
    seconds: float = 0.0


# how often the end of our save is looked for: the copy waits for it, and INFO persistence is
# a cheap call (a save of a few GB polled 50 times a second costs the server nothing noticeable)
SAVE_POLL = 0.02
BUSY_REPLIES = ("already in progress", "Another child process is active", "can't BGSAVE right now")


def overcommit_hint() -> str:
    try:
        with open("/proc/sys/vm/overcommit_memory", encoding="ascii") as handle:
            value = handle.read().strip()
    except OSError:
        value = "?"
    hint = "if the Redis log says the fork failed ('Cannot allocate memory'), set vm.overcommit_memory = 1"
    if value != "1":
        hint += " (it is %s on this host)" % value
    return hint


def save_failed(conn: Connection, what: str, persistence: t.Mapping[str, str], directory: str | None = None) -> StageError:
    status = ", ".join(
        "%s:%s" % (k, persistence[k])
        for k in ("rdb_last_bgsave_status", "rdb_last_bgsave_time_sec", "rdb_current_bgsave_time_sec", "rdb_saves")
        if k in persistence
    )
    log = "docker logs %s --tail 50" % conn.container if conn.mode == "docker" else "the Redis log"
    return StageError(
        "%s (INFO persistence: %s). Check %s; check free space and write permission in Redis' dir%s; %s."
        % (what, status or "no details", log, " (%s)" % directory if directory else "", overcommit_hint()),
        stage="bgsave",
    )


LENGTH_COMMANDS = {"hash": "HLEN", "list": "LLEN", "set": "SCARD", "zset": "ZCARD", "stream": "XLEN", "string": "STRLEN"}


def _across(session: Session, commands: t.Sequence[tuple[int, tuple[t.Any, ...]]]) -> list[list[Item]]:
    """Commands tagged with their database, in one exchange (SELECTs added between)."""
    lines: list[tuple[t.Any, ...]] = []
    where: list[bool] = []
    db = None
    for command_db, command in commands:
        if command_db != db:
            lines.append(("SELECT", command_db))
            where.append(False)
            db = command_db
        lines.append(command)
        where.append(True)
    if db not in (None, 0):
        lines.append(("SELECT", 0))
        where.append(False)
    return [reply for keep, reply in zip(where, session.pipeline(lines)) if keep]


def take_sample(session: Session, databases: t.Mapping[str, t.Mapping[str, int]], per_db: int, v7: bool) -> list[dict[str, t.Any]]:
    """A few random keys per database with their type, size, digest and absolute expiry.

    Four exchanges whatever the number of databases: it runs while writes are paused.
    """
    dbs = [int(name[2:]) for name in list(databases)[:16]]
    picked: list[tuple[int, bytes]] = []
    replies = _across(session, [(db, ("RANDOMKEY",)) for db in dbs for _attempt in range(per_db)])
    for index, reply in enumerate(replies):
        key = reply[0] if reply else None
        db = dbs[index // per_db]
        if isinstance(key, bytes) and (db, key) not in picked:
            picked.append((db, key))
    if not picked:
        return []
    described = _across(session, [(db, c) for db, k in picked for c in (("TYPE", k), ("PEXPIRETIME", k) if v7 else ("PTTL", k))])
    types = [r[0].decode() if r and isinstance(r[0], bytes) else "none" for r in described[0::2]]
    expiry = [r[0] if r and isinstance(r[0], int) else None for r in described[1::2]]
    measured = [(db, k, ty) for (db, k), ty in zip(picked, types) if ty in LENGTH_COMMANDS]
    lengths = {(db, k): r[0] for (db, k, ty), r in zip(measured, _across(session, [(db, (LENGTH_COMMANDS[ty], k)) for db, k, ty in measured]))}
    small = [(db, k) for (db, k), ty in zip(picked, types)
             if ty == "string" and isinstance(lengths.get((db, k)), int) and t.cast(int, lengths[(db, k)]) <= SAMPLE_STRING_LIMIT]
    values = {dk: r[0] for dk, r in zip(small, _across(session, [(db, ("GET", k)) for db, k in small]))}
    sample: list[dict[str, t.Any]] = []
    for (db, key), kind, expire in zip(picked, types, expiry):
        entry = dict(key_record(key), db=db, type=kind)
        if kind in LENGTH_COMMANDS:
            length = lengths.get((db, key))
            entry["length"] = length if isinstance(length, int) else None
        if (db, key) in values:
            value = values[(db, key)]
            entry["sha256"] = hashlib.sha256(value if isinstance(value, bytes) else b"").hexdigest()
        if v7:
            entry["expire_at_ms"] = expire if expire is not None and expire >= 0 else -1
        sample.append(entry)
    return sample


def _wait_idle(session: Session, deadline: float, conn: Connection) -> None:
    """Wait until no RDB save or AOF rewrite runs (BGSAVE would be refused meanwhile)."""
    while True:
        p = session.info("persistence")
        if p.get("rdb_bgsave_in_progress") != "1" and p.get("aof_rewrite_in_progress") != "1":
            return
        if time.monotonic() > deadline:
            raise save_failed(conn, "another save or AOF rewrite is still running; gave up waiting for it", p)
        time.sleep(Session.TICK)


def _start_save(
    session: Session, conn: Connection, pause_ms: int, per_db: int, v7: bool
) -> Snapshot | None:
    """Count the keys (and take the sample) with writes paused, then BGSAVE; ``None`` if busy."""
    notes: list[str] = []
    paused = False
    started = time.monotonic()
    if pause_ms > 0:
        reply = session.call("CLIENT", "PAUSE", pause_ms, "WRITE", allow_error=True)
        if reply and isinstance(reply[0], ErrorReply):
            notes.append("writes were not paused (%s): the key counts are approximate" % reply[0].message)
        else:
            paused = True
    try:
        before = session.info("persistence")
        databases = parse_keyspace(session.info("keyspace"))
        sample = take_sample(session, databases, per_db, v7) if per_db > 0 and paused else []
        reply = session.call("BGSAVE", allow_error=True)
        elapsed = (time.monotonic() - started) * 1000.0
    finally:
        if paused:
            session.call("CLIENT", "UNPAUSE", allow_error=True)
    if reply and isinstance(reply[0], ErrorReply):
        if any(b in reply[0].message for b in BUSY_REPLIES):
            return None
        raise save_failed(conn, explain("BGSAVE was refused: %s" % reply[0].message, conn), session.info("persistence"))
    exact = paused and elapsed < pause_ms
    if paused and not exact:
        notes.append("the write pause ended before the fork (%.0f ms): the key counts are approximate" % elapsed)
    saves = int(before["rdb_saves"]) + 1 if "rdb_saves" in before else None
    if saves is None:
        notes.append("this Redis has no rdb_saves counter: a save that replaced ours could go unnoticed")
    return Snapshot(saves, databases, exact, round(elapsed, 1) if paused else None, sample, notes, started)


def bgsave(
    session: Session,
    conn: Connection,
    *,
    pause_ms: int = 1000,
    sample_keys: int = 3,
    timeout: float = 3600.0,
    v7: bool = True,
) -> Snapshot:
    """BGSAVE and wait for that save to end (never SAVE, never LASTSAVE).

    Our save is the one that moved ``rdb_saves`` to ``Snapshot.saves``. It is over when
    ``rdb_bgsave_in_progress`` is 0 again; ``rdb_last_bgsave_status`` then says how it went.
    If ``rdb_saves`` moved further, a later save has replaced the file: :class:`RdbReplaced`.
    """
    snap = start_bgsave(session, conn, pause_ms=pause_ms, sample_keys=sample_keys, timeout=timeout, v7=v7)
    return wait_bgsave(session, conn, snap, timeout)


def start_bgsave(
    session: Session, conn: Connection, *, pause_ms: int = 1000, sample_keys: int = 3, timeout: float = 3600.0, v7: bool = True,
) -> Snapshot:
    """The first half of :func:`bgsave`: our save has started (forked); :func:`wait_bgsave` waits for it."""
    deadline = time.monotonic() + timeout
    _progress.hold()  # a consistent set: wait here until the application is paused
    while True:
        _wait_idle(session, deadline, conn)
        snap = _start_save(session, conn, pause_ms, sample_keys, v7)
        if snap is not None:
            _progress.point_fixed()  # forked: the RDB holds the data of this instant
            return snap


def wait_bgsave(
    session: Session, conn: Connection, snap: Snapshot, timeout: float = 3600.0, tick: t.Callable[[], bool] | None = None,
) -> Snapshot:
    """The second half of :func:`bgsave`. Between two looks, ``tick`` (when given) does some
    work and says whether it did any; when it did not, the next look waits :data:`SAVE_POLL`."""
    deadline = snap.started + timeout
    while True:
        p = session.info("persistence")
        saves = int(p["rdb_saves"]) if "rdb_saves" in p else None
        newer = snap.saves is not None and saves is not None and saves > snap.saves
        if p.get("rdb_bgsave_in_progress") != "1":
            if newer:
                raise RdbReplaced("another save ran after ours (rdb_saves %s, ours %s)" % (saves, snap.saves))
            if p.get("rdb_last_bgsave_status") != "ok":
                raise save_failed(conn, "the background save failed", p, session.config_get("dir"))
            snap.seconds = round(time.monotonic() - snap.started, 3)
            return snap
        if newer:
            raise RdbReplaced("another save started after ours (rdb_saves %s, ours %s)" % (saves, snap.saves))
        if time.monotonic() > deadline:
            raise save_failed(
                conn, "the background save did not finish within %g seconds; it was left running" % timeout, p
            )
        if tick is None or not tick():
            time.sleep(SAVE_POLL)


TEMP_RDB = re.compile(r"temp-\d+\.rdb")  # what a Redis save child writes before renaming it onto dbfilename


def temp_rdbs(directory: str) -> set[str]:
    """The save children's temp files in Redis' dir (empty when it cannot be listed)."""
    try:
        return {name for name in os.listdir(directory) if TEMP_RDB.fullmatch(name)}
    except OSError:
        return set()


def open_temp_rdb(session: Session, directory: str, before: t.AbstractSet[str], wait: float = 2.0) -> t.Any:
    """The temp file our save's child is writing, opened for reading (``None``: not found,
    because the save already ended, or more than one is new, or it cannot be read). Only one
    save runs at a time, so the one temp file that appeared since ``before`` is ours; the
    caller still checks that the file renamed into place is the one it read."""
    deadline = time.monotonic() + wait
    while True:
        new = temp_rdbs(directory) - set(before)
        if len(new) == 1:
            try:
                return open(os.path.join(directory, new.pop()), "rb", buffering=0)  # pylint: disable=consider-using-with
            except OSError:
                return None
        if new or time.monotonic() > deadline or session.info("persistence").get("rdb_bgsave_in_progress") != "1":
            return None
        time.sleep(0.005)


def rdb_saves(session: Session) -> int | None:
    p = session.info("persistence")
    return int(p["rdb_saves"]) if "rdb_saves" in p else None


def rdb_location(session: Session) -> str | None:
    """Path of the server's RDB file, as the server sees it; ``None`` when CONFIG is refused."""
    directory = session.config_get("dir")
    name = session.config_get("dbfilename")
    if not directory or not name:
        return None
    return os.path.join(directory, name)


def read_header(conn: Connection, path: str) -> bytes:
    """The first 9 bytes of a file where the server is."""
    if conn.mode == "docker":
        return run(conn.tool(["head", "-c", "9", path], stage="head")).stdout
    with open(path, "rb") as handle:
        return handle.read(9)
