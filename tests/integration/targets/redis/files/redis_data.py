# Copyright (c) cclite.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Test data for the Redis tests: seed a server, and take an exact snapshot of every key.

Standard library only (it runs on the controller, in the test containers and on CI), talking
RESP over a socket, so binary keys and values are exact.

    redis_data.py seed     --port P       keys of every type, TTLs, 4 databases, binary data
    redis_data.py snapshot --port P       JSON on stdout: every key, its type, value and expiry
    redis_data.py compare  --port P --expect FILE       exit 1 and list differences unless they are equal
    redis_data.py free-port                             print a TCP port nobody listens on

The password comes from REDISCLI_AUTH in the environment (as for redis-cli), never argv.
A snapshot records each key's absolute expiry (PEXPIRETIME), so two snapshots of the same data
are equal whatever time passed between them (as long as no key expired).
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import socket
import sys

DATABASES = (0, 1, 5, 15)
# Expiries far in the future (ms since the epoch) and a relative one, so both kinds come back.
FAR = 4102444800000  # 2100-01-01


class Client:
    def __init__(self, host: str, port: int, password: str = "", user: str = "", sock: str = "") -> None:
        if sock:
            self.sock = socket.socket(socket.AF_UNIX)
            self.sock.connect(sock)
        else:
            self.sock = socket.create_connection((host, port), timeout=30)
        self.buf = b""
        if password:
            self.call(*(["AUTH", user, password] if user else ["AUTH", password]))

    def _line(self) -> bytes:
        while b"\r\n" not in self.buf:
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError("connection closed")
            self.buf += data
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def _exact(self, n: int) -> bytes:
        while len(self.buf) < n + 2:
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError("connection closed")
            self.buf += data
        data, self.buf = self.buf[:n], self.buf[n + 2:]
        return data

    def _reply(self):
        line = self._line()
        kind, rest = line[:1], line[1:]
        if kind == b"+":
            return rest
        if kind == b"-":
            raise RuntimeError(rest.decode())
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            return None if n < 0 else self._exact(n)
        if kind == b"*":
            n = int(rest)
            return None if n < 0 else [self._reply() for _index in range(n)]
        raise RuntimeError("unexpected reply %r" % line)

    def call(self, *args):
        out = b"*%d\r\n" % len(args)
        for arg in args:
            data = arg if isinstance(arg, bytes) else str(arg).encode()
            out += b"$%d\r\n%s\r\n" % (len(data), data)
        self.sock.sendall(out)
        return self._reply()


def seed(c: Client) -> None:
    c.call("FLUSHALL")
    c.call("SELECT", 0)
    c.call("SET", "session:alice", '{"user": "alice", "roles": ["operator"]}')
    c.call("SET", "session:bob", "bob-token", "PXAT", FAR)
    c.call("SET", b"bin:\x00\xff\r\n\"key\\", bytes(range(256)) * 4)
    c.call("SET", "counter", 42)
    c.call("SET", "big", "x" * 200000)
    c.call("HSET", "user:1", "name", "Ada", "email", "ada@example.invalid", b"\x00f", b"\xfe\xff")
    c.call("RPUSH", "queue", *["job-%d" % i for i in range(300)])
    c.call("SADD", "tags", "red", "green", "blue", b"\x01\x02")
    c.call("SADD", "ints", *range(50))
    c.call("ZADD", "scores", 1.5, "a", 2, "b", -3.25, "c", 1e10, b"\xff")
    c.call("XADD", "events", "1-1", "type", "login", "user", "alice")
    c.call("XADD", "events", "2-0", "type", "logout", "user", "alice")
    c.call("XGROUP", "CREATE", "events", "workers", "0")
    c.call("HSET", "ttl:hash", "a", "1")
    c.call("PEXPIREAT", "ttl:hash", FAR + 123)
    c.call("SET", "ttl:relative", "soon-ish", "EX", 86400)
    for i in range(500):
        c.call("SET", "key:%04d" % i, "value-%d" % i)
    c.call("SELECT", 1)
    c.call("SET", "db1:only", "one")
    c.call("LPUSH", "db1:list", "x", "y", "z")
    c.call("SELECT", 5)
    c.call("HSET", "db5:hash", *[x for i in range(1000) for x in ("f%d" % i, "v%d" % i)])
    c.call("ZADD", "db5:zset", *[x for i in range(200) for x in (i, "m%d" % i)])
    c.call("SET", "db5:ttl", "v", "PXAT", FAR + 5)
    c.call("SELECT", 15)
    c.call("SET", b"\xe2\x82\xac-euro", "utf-8 key")
    c.call("SELECT", 0)


def value_of(c: Client, key: bytes, kind: str):
    if kind == "string":
        return [c.call("GET", key)]
    if kind == "hash":
        flat = c.call("HGETALL", key)
        return sorted(zip(flat[0::2], flat[1::2]))
    if kind == "list":
        return c.call("LRANGE", key, 0, -1)
    if kind == "set":
        return sorted(c.call("SMEMBERS", key))
    if kind == "zset":
        flat = c.call("ZRANGE", key, 0, -1, "WITHSCORES")
        return list(zip(flat[0::2], flat[1::2]))
    if kind == "stream":
        entries = c.call("XRANGE", key, "-", "+")
        groups = c.call("XINFO", "GROUPS", key)
        return [entries, [g[:2] for g in groups]]
    return [c.call("DUMP", key)]


def encode(value):
    if isinstance(value, bytes):
        return {"b64": base64.b64encode(value).decode()}
    if isinstance(value, (list, tuple)):
        return [encode(v) for v in value]
    return value


def snapshot(c: Client) -> dict:
    out = {}
    for db in range(16):
        c.call("SELECT", db)
        cursor = b"0"
        keys = []
        while True:
            cursor, batch = c.call("SCAN", cursor, "COUNT", 1000)
            keys += batch
            if cursor == b"0":
                break
        for key in sorted(set(keys)):
            kind = c.call("TYPE", key).decode()
            name = "%d:%s" % (db, base64.b64encode(key).decode())
            out[name] = {"type": kind, "value": encode(value_of(c, key, kind)), "expire_at": c.call("PEXPIRETIME", key)}
    c.call("SELECT", 0)
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("action", choices=["seed", "snapshot", "compare", "free-port"])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=6379)
    parser.add_argument("--socket", default="")
    parser.add_argument("--user", default="")
    parser.add_argument("--password", default=os.environ.get("REDISCLI_AUTH", ""), help=argparse.SUPPRESS)
    parser.add_argument("--expect", default="")
    args = parser.parse_args()
    if args.action == "free-port":
        print(free_port())
        return 0
    client = Client(args.host, args.port, args.password, args.user, args.socket)
    if args.action == "seed":
        seed(client)
        print(json.dumps({"keys": len(snapshot(client))}))
        return 0
    current = snapshot(client)
    if args.action == "snapshot":
        json.dump(current, sys.stdout, sort_keys=True)
        return 0
    with open(args.expect, encoding="utf-8") as handle:
        expected = json.load(handle)
    problems = []
    for name in sorted(set(expected) | set(current)):
        if name not in current:
            problems.append("missing %s" % name)
        elif name not in expected:
            problems.append("unexpected %s" % name)
        elif expected[name] != current[name]:
            problems.append("differs %s: %s != %s" % (name, json.dumps(current[name])[:200], json.dumps(expected[name])[:200]))
    print(json.dumps({"keys": len(current), "expected": len(expected), "problems": problems[:50]}))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
