# -*- coding: utf-8 -*-
# Copyright (c) cclite.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Redis engine: redis-cli sessions, INFO, BGSAVE, RDB files, the logical format, scratch servers.

Every command reaches Redis through ``redis-cli``, run where the server's tools are (inside the
container in docker mode, so the client always matches the server). The password travels as
``REDISCLI_AUTH`` in redis-cli's environment (``docker exec -e REDISCLI_AUTH``), never in argv.

A :class:`Session` keeps one ``redis-cli --csv`` process open and talks to it line by line:
arguments go in double-quoted with ``\\xHH`` escapes (redis-cli's own ``sdssplitargs`` syntax),
replies come back one CSV line each with the same escapes, so binary keys and values survive
both ways. After each request the session sends ``ECHO <sentinel>`` and reads up to that line,
which frames replies that print on several lines (INFO) or irregularly (MULTI).
"""

from __future__ import annotations

import base64
import codecs
import dataclasses
import hashlib
import json
import os
import re
import secrets
import select
import shutil
import signal
import struct
import subprocess
import tempfile
import threading
import time
import typing as t
import weakref

from ansible_collections.cclite.backup.plugins.module_utils._errors import ConfigError, StageError
from ansible_collections.cclite.backup.plugins.module_utils._process import Command, Target, run, spooled_tail, tail

RDB_MAGIC = b"REDIS"
RDB_EOF = 0xFF
LOCAL_HOSTS = ("", "127.0.0.1", "localhost", "::1")
SAMPLE_STRING_LIMIT = 64 * 1024  # strings up to this size get a sha256 in the key sample
# redis-cli keeps running after these (it prints them on stderr and waits for the next line).
FATAL_STDERR = ("Could not connect", "AUTH failed", "Error: ", "Connection refused", "Connection reset")


class RdbReplaced(StageError):
    """Another save finished after ours, so the RDB on disk is no longer the one we counted."""


# --- redis-cli input and output --------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ErrorReply:
    """An error reply (``-ERR ...``), kept as a value so callers decide what it means."""

    message: str

    @property
    def code(self) -> str:
        return self.message.split(" ", 1)[0]


Item = t.Union[bytes, int, None, ErrorReply]

_PRINTABLE = re.compile(rb'[^\x20\x21\x23-\x5b\x5d-\x7e]')
_CSV_TOKEN = re.compile(rb'"([^"\\]*(?:\\.[^"\\]*)*)"|([^,"]*)', re.S)
_ESCAPES = {i: b"\\x%02x" % i for i in range(256)}
_ESCAPES.update({ord('"'): b'\\"', ord("\\"): b"\\\\"})


def quote(value: t.Union[bytes, str, int, float]) -> bytes:
    """One argument in the double-quoted syntax redis-cli's line parser reads back exactly."""
    if isinstance(value, (int, float)):
        data = str(value).encode()
    elif isinstance(value, str):
        data = value.encode("utf-8")
    else:
        data = value
    return b'"' + _PRINTABLE.sub(lambda m: _ESCAPES[m.group()[0]], data) + b'"'


def command_line(args: t.Sequence[t.Union[bytes, str, int, float]]) -> bytes:
    """A command as one redis-cli input line: the name bare, every argument quoted."""
    name = args[0] if isinstance(args[0], str) else args[0].decode("ascii")
    if not re.match(r"^[A-Za-z][A-Za-z0-9_|-]*$", name):
        raise ConfigError("not a Redis command name: %r" % name)
    return b" ".join([name.encode()] + [quote(a) for a in args[1:]]) + b"\n"


def parse_csv(line: bytes) -> list[Item]:
    """The items of one ``redis-cli --csv`` reply line (arrays come flattened)."""
    items: list[Item] = []
    pos, end = 0, len(line)
    pending_error = False
    while pos < end:
        match = _CSV_TOKEN.match(line, pos)
        if match is None or match.end() == pos and line[pos:pos + 1] != b",":
            raise StageError("cannot read redis-cli output near %r" % line[pos:pos + 40])
        if match.group(1) is not None:
            value = codecs.escape_decode(match.group(1))[0]
            if pending_error:
                items.append(ErrorReply(value.decode("utf-8", errors="replace")))
                pending_error = False
            else:
                items.append(value)
        else:
            token = match.group(2)
            if token == b"ERROR":
                pending_error = True
            elif token == b"NULL":
                items.append(None)
            elif token:
                try:
                    items.append(int(token))
                except ValueError:
                    items.append(token)  # RESP3 doubles and other bare words, as they are
        pos = match.end()
        if pos < end:
            if line[pos:pos + 1] != b",":
                raise StageError("cannot read redis-cli output near %r" % line[pos:pos + 40])
            pos += 1
    return items


def parse_info(text: str) -> dict[str, str]:
    """``INFO`` output as a flat mapping (section headers and blank lines dropped)."""
    fields = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or ":" not in line:
            continue
        key, value = line.split(":", 1)
        fields[key] = value
    return fields


def parse_keyspace(info: t.Mapping[str, str]) -> dict[str, dict[str, int]]:
    """``db0:keys=5,expires=2,avg_ttl=0`` lines as ``{"db0": {"keys": 5, "expires": 2}}``."""
    spaces = {}
    for key, value in info.items():
        if not re.match(r"^db\d+$", key):
            continue
        parts = dict(p.split("=", 1) for p in value.split(",") if "=" in p)
        spaces[key] = {"keys": int(parts.get("keys", 0)), "expires": int(parts.get("expires", 0))}
    return dict(sorted(spaces.items(), key=lambda kv: int(kv[0][2:])))


def version_tuple(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in re.findall(r"\d+", version)[:3])


def rdb_version(header: bytes) -> int | None:
    """The format version in an RDB header (``REDIS0010`` -> 10), ``None`` when not an RDB."""
    if len(header) < 9 or not header.startswith(RDB_MAGIC) or not header[5:9].isdigit():
        return None
    return int(header[5:9])


# The RDB format each Redis release writes (and the newest it reads); newer releases are unknown.
RDB_FORMATS = ((4, 0, 8), (5, 0, 9), (7, 0, 10), (7, 2, 11), (7, 4, 12))


def rdb_format_of(redis_version: str) -> int | None:
    """The RDB format a Redis version writes, when this collection knows it."""
    found = version_tuple(redis_version)
    if len(found) < 2 or found[:2] > RDB_FORMATS[-1][:2] or found[:2] < RDB_FORMATS[0][:2]:
        return None
    return [fmt for major, minor, fmt in RDB_FORMATS if found[:2] >= (major, minor)][-1]


def key_record(key: bytes) -> dict[str, t.Any]:
    """A key for a JSON manifest: readable when it is printable text, always exact in base64."""
    try:
        text: str | None = key.decode("utf-8")
        if not text.isprintable():
            text = None
    except UnicodeDecodeError:
        text = None
    return {"key": text, "key_base64": base64.b64encode(key).decode("ascii")}


# --- connections -----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Connection:
    """Where Redis is and how to log in."""

    mode: str = "docker"  # docker | host
    container: str = "cc-lite-redis"
    container_user: str = ""
    login_host: str = ""
    login_port: int = 6379
    login_user: str = ""
    login_password: str = ""
    login_unix_socket: str = ""
    tls: bool = False
    ca_cert: str = ""
    client_cert: str = ""
    client_key: str = ""
    validate_certs: bool = True
    connect_timeout: int = 10

    def target(self) -> Target:
        if self.mode == "docker":
            if not self.container:
                raise ConfigError("mode docker needs the container's name (redis_backup_container)")
            return Target(container=self.container, container_user=self.container_user)
        if self.mode != "host":
            raise ConfigError("unknown mode %r: use docker or host" % self.mode)
        return Target()

    def cli_args(self) -> list[str]:
        args: list[str] = []
        if self.login_unix_socket:
            args += ["-s", self.login_unix_socket]
        else:
            if self.login_host:
                args += ["-h", self.login_host]
            args += ["-p", str(self.login_port)]
        if self.login_user:
            args += ["--user", self.login_user]
        if self.tls:
            args.append("--tls")
            if self.ca_cert:
                args += ["--cacert", self.ca_cert]
            if self.client_cert:
                args += ["--cert", self.client_cert]
            if self.client_key:
                args += ["--key", self.client_key]
            if not self.validate_certs:
                args.append("--insecure")
        elif self.ca_cert or self.client_cert or self.client_key:
            raise ConfigError("ca_cert, client_cert and client_key need tls: true")
        return args

    def env(self) -> dict[str, str]:
        return {"REDISCLI_AUTH": self.login_password} if self.login_password else {}

    def cli(self, args: t.Sequence[str], stage: str = "redis-cli") -> Command:
        """redis-cli with the connection options; the password only in its environment."""
        return self.target().command(["redis-cli"] + self.cli_args() + list(args), self.env(), {"REDISCLI_AUTH"}, stage)

    def tool(self, argv: t.Sequence[str], stage: str = "") -> Command:
        """Another program where the server's tools are (no credentials)."""
        return self.target().command(list(argv), stage=stage)

    @property
    def is_local(self) -> bool:
        """Whether the server's files are reachable: in its container, or on this host."""
        return self.mode == "docker" or bool(self.login_unix_socket) or self.login_host in LOCAL_HOSTS

    def secrets(self) -> list[str]:
        return [self.login_password] if self.login_password else []

    def describe(self) -> str:
        where = self.login_unix_socket or "%s:%d" % (self.login_host or "127.0.0.1", self.login_port)
        return "Redis at %s from %s" % (where, self.target().describe())


def explain(message: str, conn: Connection) -> str:
    """Add the likely fix to the errors people meet first."""
    hints = (
        ("WRONGPASS", "check redis_backup_login_user and redis_backup_login_password (the password is never shown)"),
        ("AUTH failed", "check redis_backup_login_user and redis_backup_login_password (the password is never shown)"),
        ("NOAUTH", "the server needs a password: set redis_backup_login_password"),
        ("NOPERM", "the ACL user lacks a permission; it needs at least +@admin +@keyspace +@read (and +@write to restore)"),
        ("No such container", "start the container (docker compose up -d) or set redis_backup_container"),
        ("is not running", "start the container (docker compose up -d)"),
        ("Could not connect", "is Redis running and listening there? check redis_backup_login_host and _login_port"),
        ("unknown command", "the command is disabled or renamed on this server (managed Redis?): try method logical"),
    )
    for needle, hint in hints:
        if needle in message:
            return "%s (%s)" % (message, hint)
    return message


def cli_version(conn: Connection) -> str:
    return run(conn.tool(["redis-cli", "-v"], stage="redis-cli")).stdout.decode().strip()


def container_running(conn: Connection) -> bool:
    target = conn.target()
    result = run(Command((target.docker_bin, "inspect", "-f", "{{.State.Running}}", conn.container), stage="docker"), check=False)
    return result.rc == 0 and result.stdout.strip() == b"true"


class Session:
    """One ``redis-cli --csv`` process, requests in, reply lines out (see the module docstring)."""

    TICK = 0.1

    def __init__(self, conn: Connection, timeout: float = 60.0) -> None:
        self.conn = conn
        self.timeout = timeout
        self.cmd = conn.cli(["--csv"])
        self.err = tempfile.TemporaryFile()
        self._buf = bytearray()
        self._mark = b'"__cclite_backup_%s__"' % secrets.token_hex(8).encode()
        try:
            self.proc = subprocess.Popen(
                list(self.cmd.argv),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=self.err,
                env=self.cmd.environ(),
                bufsize=0,
            )
        except FileNotFoundError as exc:
            self.err.close()
            raise ConfigError("cannot run redis-cli: %s is not installed or not on PATH (install redis-tools)" % exc.filename) from exc
        try:
            reply = self.call("PING", timeout=max(float(conn.connect_timeout), 1.0))
            self._check_stderr(final=False)
            if reply != [b"PONG"]:
                raise StageError("Redis answered PING with %r" % (reply,))
        except BaseException:
            self.close()
            raise

    # low level ---------------------------------------------------------------------------

    def stderr(self) -> str:
        """redis-cli's error output, each distinct line once (it repeats them per command)."""
        lines = spooled_tail(self.err, self.cmd.secrets()).splitlines()
        return "; ".join(dict.fromkeys(line.strip() for line in lines if line.strip()))

    def _check_stderr(self, final: bool) -> None:
        text = self.stderr()
        if final or any(needle in text for needle in FATAL_STDERR):
            raise StageError(explain("redis-cli: %s" % (text or "ended without output"), self.conn), stage="redis-cli")

    def _send(self, data: bytes) -> None:
        try:
            t.cast(t.BinaryIO, self.proc.stdin).write(data)
        except (BrokenPipeError, ValueError):
            self.proc.wait()
            self._check_stderr(final=True)

    def _line(self, deadline: float) -> bytes:
        fd = t.cast(t.BinaryIO, self.proc.stdout).fileno()
        while True:
            cut = self._buf.find(b"\n")
            if cut >= 0:
                line = bytes(self._buf[:cut])
                del self._buf[:cut + 1]
                return line[:-1] if line.endswith(b"\r") else line
            ready = select.select([fd], [], [], self.TICK)[0]
            if ready:
                data = os.read(fd, 1024 * 1024)
                if not data:
                    self.proc.wait()
                    self._check_stderr(final=True)
                self._buf += data
                continue
            self._check_stderr(final=False)
            if self.proc.poll() is not None:
                self._check_stderr(final=True)
            if time.monotonic() > deadline:
                raise StageError(
                    explain("Redis did not answer within %g seconds" % (deadline - self._started), self.conn), stage="redis-cli"
                )

    def exchange(self, lines: t.Sequence[bytes], timeout: float | None = None) -> list[bytes]:
        """Send lines, then the sentinel; return every output line before the sentinel."""
        self._started = time.monotonic()
        deadline = self._started + (timeout or self.timeout)
        payload = b"".join(lines) + b"ECHO " + self._mark + b"\n"
        if len(payload) <= 16 * 1024:
            self._send(payload)
            writer = None
        else:  # a big pipeline: write while reading, or both pipes fill up
            writer = threading.Thread(target=self._send, args=(payload,), daemon=True)
            writer.start()
        out = []
        try:
            while True:
                line = self._line(deadline)
                if line == self._mark:
                    return out
                out.append(line)
        finally:
            if writer is not None:
                writer.join(timeout=5)

    # commands ----------------------------------------------------------------------------

    def call(self, *args: t.Union[bytes, str, int], allow_error: bool = False, timeout: float | None = None) -> list[Item]:
        """One command; its reply items (an array comes flattened). Errors raise unless allowed."""
        lines = self.exchange([command_line(args)], timeout)
        if len(lines) != 1:
            items: list[Item] = [ErrorReply(b" ".join(lines).decode("utf-8", errors="replace") or "no reply")]
        else:
            items = parse_csv(lines[0])
        if not allow_error and items and isinstance(items[0], ErrorReply):
            raise StageError(explain("Redis %s failed: %s" % (args[0], items[0].message), self.conn), stage="redis")
        return items

    def pipeline(self, commands: t.Sequence[t.Sequence[t.Union[bytes, str, int]]], timeout: float | None = None) -> list[list[Item]]:
        """Several single-line commands in one exchange; one reply (its items) per command."""
        lines = self.exchange([command_line(c) for c in commands], timeout)
        if len(lines) != len(commands):
            raise StageError("redis-cli returned %d reply lines for %d commands" % (len(lines), len(commands)))
        return [parse_csv(line) for line in lines]

    def info(self, section: str) -> dict[str, str]:
        lines = self.exchange([command_line(["INFO", section])])
        text = b"\n".join(lines).decode("utf-8", errors="replace")
        if text.startswith("ERROR,"):
            raise StageError(explain("Redis INFO failed: %s" % text[6:], self.conn), stage="redis")
        return parse_info(text)

    def config_get(self, name: str) -> str | None:
        """A configuration value; ``None`` when the server has no such setting or refuses CONFIG."""
        items = self.call("CONFIG", "GET", name, allow_error=True)
        if len(items) >= 2 and isinstance(items[1], bytes):
            return items[1].decode("utf-8", errors="replace")
        return None

    def close(self) -> None:
        try:
            if self.proc.poll() is None and self.proc.stdin is not None:
                self.proc.stdin.close()
            self.proc.wait(timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            self.proc.kill()
            self.proc.wait()
        except AttributeError:  # Popen itself failed
            pass
        finally:
            if self.proc.stdout is not None:
                self.proc.stdout.close()
            self.err.close()

    def __enter__(self) -> "Session":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def server_facts(session: Session) -> dict[str, t.Any]:
    """What the backup and restore need to know about the server."""
    server = session.info("server")
    memory = session.info("memory")
    persistence = session.info("persistence")
    return {
        "redis_version": server.get("redis_version", "unknown"),
        "process_id": int(server.get("process_id", "0") or 0),
        "config_file": server.get("config_file", ""),
        "used_memory": int(memory.get("used_memory", "0") or 0),
        "aof_enabled": persistence.get("aof_enabled") == "1",
        "has_rdb_saves": "rdb_saves" in persistence,
        "databases": parse_keyspace(session.info("keyspace")),
    }


# --- BGSAVE ----------------------------------------------------------------------------------


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
    deadline = time.monotonic() + timeout
    while True:
        _wait_idle(session, deadline, conn)
        snap = _start_save(session, conn, pause_ms, sample_keys, v7)
        if snap is not None:
            break
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
        time.sleep(Session.TICK)


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


# --- checking RDB files ----------------------------------------------------------------------


def checker_command(conn: Connection) -> tuple[Command | None, str]:
    """redis-check-rdb reading stdin: in the container when it runs (same version as the server),
    else on this host. Returns the command (or ``None``) and where it runs."""
    if conn.mode == "docker" and container_running(conn):
        return conn.tool(["redis-check-rdb", "/dev/stdin"], stage="redis-check-rdb"), "container %s" % conn.container
    if shutil.which("redis-check-rdb"):
        return Command(("redis-check-rdb", "/dev/stdin"), stage="redis-check-rdb"), "this host"
    where = "the container %s is not running and " % conn.container if conn.mode == "docker" else ""
    return None, "%sredis-check-rdb is not installed on this host (install redis-tools)" % where


def _kill(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.kill()
        proc.wait()


class RdbCheck:
    """Content check: the RDB header and end marker, and redis-check-rdb on the whole stream.

    The decompressed RDB is fed to ``redis-check-rdb /dev/stdin`` as it is read: no temp copy.
    ``keys``, ``expires`` and ``already_expired`` hold what the tool counted. Without a checker
    (``None``) only the header and end marker are checked: a backup's read-back, whose source
    RDB went through redis-check-rdb while it was copied (:class:`SourceCheck`).
    """

    def __init__(self, checker: tuple[Command | None, str] | None = None) -> None:
        self.structure_only = checker is None
        self.command, self.where = checker if checker is not None else (None, "")
        self.head = b""
        self.tail = b""
        self.size = 0
        self.proc: subprocess.Popen | None = None
        self.out: t.Any = None
        self.broken = False
        self.keys: int | None = None
        self.expires: int | None = None
        self.already_expired: int | None = None
        self.version: int | None = None

    def _start(self, command: Command) -> None:
        self.out = tempfile.TemporaryFile()
        try:
            self.proc = subprocess.Popen(
                list(command.argv), stdin=subprocess.PIPE, stdout=self.out, stderr=subprocess.STDOUT, env=command.environ()
            )
        except FileNotFoundError:
            self.command = None
            self.where = "redis-check-rdb could not be started"
            return
        weakref.finalize(self, _kill, self.proc)

    def feed(self, chunk: bytes) -> None:
        if len(self.head) < 9:
            self.head = (self.head + chunk[:9])[:9]
        self.tail = (self.tail + chunk[-9:])[-9:]
        self.size += len(chunk)
        if self.command is not None and self.proc is None:
            self._start(self.command)
        if self.proc is not None and not self.broken:
            try:
                t.cast(t.BinaryIO, self.proc.stdin).write(chunk)
            except BrokenPipeError:
                self.broken = True  # it stopped reading: its exit status says why

    def _tool_result(self) -> str | None:
        if self.structure_only:
            return None
        if self.command is None or self.proc is None:
            return "redis-check-rdb cannot run: %s" % self.where
        try:
            t.cast(t.BinaryIO, self.proc.stdin).close()
        except BrokenPipeError:
            pass
        self.proc.wait()
        self.out.seek(0)
        text = self.out.read().decode("utf-8", errors="replace")
        self.out.close()
        for attr, value in parse_check_counts(text).items():
            setattr(self, attr, value)
        if self.proc.returncode == 0:
            return None
        return describe_check_failure(text, self.where)

    def result(self) -> str | None:
        self.version = rdb_version(self.head)
        if self.version is None:
            problem: str | None = "not an RDB file (it starts with %r, not REDIS00nn)" % self.head
        elif self.version >= 5 and (len(self.tail) < 9 or self.tail[0] != RDB_EOF):
            problem = "the RDB does not end with its EOF marker and checksum: it was cut short"
        else:
            problem = None
        tool = self._tool_result()
        return "; ".join(p for p in (problem, tool) if p) or None


def parse_check_counts(text: str) -> dict[str, int]:
    """What redis-check-rdb counted: keys, expires, already_expired."""
    counts = {}
    for name, key in (("keys read", "keys"), ("expires", "expires"), ("already expired", "already_expired")):
        found = re.search(r"\[info\] (\d+) %s" % name, text)
        if found:
            counts[key] = int(found.group(1))
    return counts


class SourceCheck:
    """redis-check-rdb on the RDB file where the server wrote it, running while it is copied.

    The copy is checked afterwards for stream integrity (gzip's CRC covers every byte) and the
    RDB's header and end marker; the tool's reading of the source then stands for the copy.
    """

    def __init__(self, conn: Connection, path: str, local: bool) -> None:
        self.path = path
        self.out = tempfile.TemporaryFile()
        if local:
            cmd = Command(("redis-check-rdb", path), stage="redis-check-rdb") if shutil.which("redis-check-rdb") else None
        else:
            cmd = conn.tool(["redis-check-rdb", path], stage="redis-check-rdb")
        self.proc: subprocess.Popen | None = None
        if cmd is not None:
            try:
                self.proc = subprocess.Popen(list(cmd.argv), stdin=subprocess.DEVNULL, stdout=self.out,
                                             stderr=subprocess.STDOUT, env=cmd.environ())
            except FileNotFoundError:
                self.proc = None

    def result(self, timeout: float) -> tuple[dict[str, int] | None, str | None]:
        """The tool's counts (``None`` when it could not run) and its problem, if any."""
        if self.proc is None:
            return None, None
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill(self.proc)
            return None, "redis-check-rdb did not finish within %g seconds" % timeout
        self.out.seek(0)
        text = self.out.read().decode("utf-8", errors="replace")
        if self.proc.returncode != 0:
            return parse_check_counts(text), describe_check_failure(text, "on %s" % self.path)
        return parse_check_counts(text), None

    def close(self) -> None:
        if self.proc is not None:
            _kill(self.proc)
        self.out.close()


def describe_check_failure(text: str, where: str) -> str:
    """redis-check-rdb's verdict as one sentence."""
    version = re.search(r"Can't handle RDB format version (\d+)", text)
    if version:
        return (
            "redis-check-rdb (%s) cannot read RDB format version %s: it is older than the server that wrote the "
            "backup; use the server's own tools (docker mode) or a newer redis-tools" % (where, version.group(1))
        )
    lines = text.splitlines()
    detail = ""
    for index, line in enumerate(lines):
        if "RDB ERROR DETECTED" in line and index + 1 < len(lines):
            detail = re.sub(r"^\[offset \d+\]\s*", "", lines[index + 1]).strip()
            break
    detail = detail or (lines[-1] if lines else "no output")
    if "Unexpected EOF" in detail:
        detail += " (the RDB is truncated)"
    return "redis-check-rdb found a problem: %s" % detail


# --- the logical format ----------------------------------------------------------------------

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


# --- comparing counts ------------------------------------------------------------------------


def compare_databases(
    expected: t.Mapping[str, t.Mapping[str, int]], actual: t.Mapping[str, t.Mapping[str, int]]
) -> list[str]:
    """Key counts after a load against the manifest's.

    Keys with a TTL may have expired since the backup, so a database may hold up to its
    ``expires`` fewer keys; never more, and never fewer than that.
    """
    problems = []
    for name in sorted(set(expected) | set(actual), key=lambda n: int(n[2:])):
        want = expected.get(name, {"keys": 0, "expires": 0})
        have = actual.get(name, {"keys": 0}).get("keys", 0)
        low = want.get("keys", 0) - want.get("expires", 0)
        if have > want.get("keys", 0) or have < low:
            if low == want.get("keys", 0):
                problems.append("%s has %d keys, the manifest says %d" % (name, have, want.get("keys", 0)))
            else:
                problems.append(
                    "%s has %d keys, the manifest says %d (%d with a TTL, so at least %d)"
                    % (name, have, want.get("keys", 0), want.get("expires", 0), low)
                )
    return problems


def check_sample(session: Session, sample: t.Sequence[t.Mapping[str, t.Any]], now_ms: int) -> tuple[list[str], int]:
    """Compare a manifest's key sample with a server; returns problems and keys compared."""
    problems: list[str] = []
    compared = 0
    current_db = None
    v7 = True
    for entry in sample:
        expire = entry.get("expire_at_ms")
        if isinstance(expire, int) and 0 <= expire <= now_ms + 1000:
            continue  # it has expired (or is about to) since the backup
        key = base64.b64decode(entry["key_base64"])
        label = "db%d key %s" % (entry["db"], entry.get("key") or "(base64) %s" % entry["key_base64"])
        if entry["db"] != current_db:
            session.call("SELECT", entry["db"])
            current_db = entry["db"]
        kind = session.call("TYPE", key)[0]
        kind = kind.decode() if isinstance(kind, bytes) else "none"
        compared += 1
        if kind != entry["type"]:
            problems.append("%s is a %s, the manifest says %s" % (label, kind, entry["type"]))
            continue
        if kind in LENGTH_COMMANDS and entry.get("length") is not None:
            size = session.call(LENGTH_COMMANDS[kind], key)[0]
            if size != entry["length"]:
                problems.append("%s has length %s, the manifest says %s" % (label, size, entry["length"]))
                continue
        if "sha256" in entry:
            value = session.call("GET", key)[0]
            if hashlib.sha256(value if isinstance(value, bytes) else b"").hexdigest() != entry["sha256"]:
                problems.append("%s has another value than at backup time" % label)
                continue
        if isinstance(expire, int) and v7:
            reply = session.call("PEXPIRETIME", key, allow_error=True)[0]
            if isinstance(reply, ErrorReply):
                v7 = False
            elif reply != expire:
                problems.append("%s expires at %s, the manifest says %s" % (label, reply, expire))
    if current_db not in (None, 0):
        session.call("SELECT", 0)
    return problems, compared


# --- scratch servers -------------------------------------------------------------------------


class ScratchServer:
    """A throwaway redis-server on a Unix socket in a private temp dir (no TCP port at all).

    With ``chunks`` it starts from that RDB; it never saves, and everything goes at ``close``.
    It holds the whole dataset in memory, like the server the backup came from.
    """

    def __init__(self, chunks: t.Iterable[bytes] | None = None, timeout: float = 600.0, binary: str = "redis-server") -> None:
        self.binary = shutil.which(binary)
        if not self.binary:
            raise ConfigError("redis-server is not installed on this host (needed for a throwaway server)")
        self.dir = tempfile.mkdtemp(prefix="cclite-redis-scratch-")
        self.socket = os.path.join(self.dir, "redis.sock")
        self.log = os.path.join(self.dir, "redis.log")
        self.proc: subprocess.Popen | None = None
        self.session: Session | None = None
        try:
            if chunks is not None:
                with open(os.path.join(self.dir, "dump.rdb"), "wb") as out:
                    for chunk in chunks:
                        out.write(chunk)
            argv = [
                self.binary, "--port", "0", "--unixsocket", self.socket, "--unixsocketperm", "700",
                "--dir", self.dir, "--dbfilename", "dump.rdb", "--save", "", "--appendonly", "no",
                "--daemonize", "no", "--logfile", self.log, "--databases", "256",
            ]
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            self.conn = Connection(mode="host", login_unix_socket=self.socket, connect_timeout=2)
            self.session = self._wait(self.proc, time.monotonic() + timeout)
        except BaseException:
            self.close()
            raise

    def log_tail(self) -> str:
        try:
            with open(self.log, "rb") as handle:
                return tail(handle.read(), 1500)
        except OSError:
            return ""

    def _wait(self, proc: subprocess.Popen, deadline: float) -> Session:
        while True:
            if proc.poll() is not None:
                raise StageError("the throwaway redis-server stopped: %s" % (self.log_tail() or "no log"))
            if os.path.exists(self.socket):
                try:
                    session = Session(self.conn, timeout=600)
                except StageError:
                    session = None
                if session is not None:
                    if session.info("persistence").get("loading") == "0":
                        return session
                    session.close()
            if time.monotonic() > deadline:
                raise StageError("the throwaway redis-server did not finish loading in time")
            time.sleep(0.1)

    def close(self) -> None:
        if self.session is not None:
            try:
                self.session.exchange([command_line(["SHUTDOWN", "NOSAVE"])], timeout=10)
            except StageError:
                pass  # the connection ends with the server: that is the expected outcome
            self.session.close()
            self.session = None
        if self.proc is not None:
            try:
                self.proc.send_signal(signal.SIGTERM)
                self.proc.wait(timeout=30)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> "ScratchServer":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def connection_argument_spec() -> dict[str, t.Any]:
    """Connection options shared by every Redis module (doc fragment cclite.backup.redis)."""
    return {
        "mode": {"type": "str", "default": "docker", "choices": ["docker", "host"]},
        "container": {"type": "str", "default": "cc-lite-redis"},
        "container_user": {"type": "str", "default": ""},
        "login_host": {"type": "str", "default": ""},
        "login_port": {"type": "int", "default": 6379},
        "login_user": {"type": "str", "default": ""},
        "login_password": {"type": "str", "default": "", "no_log": True},
        "login_unix_socket": {"type": "str", "default": ""},
        "tls": {"type": "bool", "default": False},
        "ca_cert": {"type": "str", "default": ""},
        "client_cert": {"type": "str", "default": ""},
        "client_key": {"type": "str", "default": "", "no_log": False},
        "validate_certs": {"type": "bool", "default": True},
        "connect_timeout": {"type": "int", "default": 10},
    }


def connection_from(params: t.Mapping[str, t.Any]) -> Connection:
    return Connection(**{name: params[name] for name in connection_argument_spec()})
