# -*- coding: utf-8 -*-
# Copyright (c) cclite.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Talking to Redis: redis-cli sessions, its CSV replies, INFO, and the connection options.

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
import os
import re
import secrets
import select
import subprocess
import threading
import time
import typing as t

from ansible_collections.cclite.backup.plugins.module_utils._core._errors import ConfigError, StageError, with_hint
from ansible_collections.cclite.backup.plugins.module_utils._core._process import Command, Target, run, start


RDB_MAGIC = b"REDIS"
RDB_EOF = 0xFF
LOCAL_HOSTS = ("", "127.0.0.1", "localhost", "::1")
SAMPLE_STRING_LIMIT = 64 * 1024  # strings up to this size get a sha256 in the key sample
# redis-cli keeps running after these (it prints them on stderr and waits for the next line).
FATAL_STDERR = ("Could not connect", "AUTH failed", "Error: ", "Connection refused", "Connection reset")


class RdbReplaced(StageError):
    """Another save finished after ours, so the RDB on disk is no longer the one we counted."""


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
    return with_hint(message, hints)


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
        self._buf = bytearray()
        self._mark = b'"__cclite_backup_%s__"' % secrets.token_hex(8).encode()
        self.child = start(self.cmd, stdin=subprocess.PIPE, hint=" (install redis-tools)", bufsize=0)
        self.proc = self.child.proc
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
        lines = self.child.stderr().splitlines()
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
        self.child.close(grace=10)

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
