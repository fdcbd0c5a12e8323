# -*- coding: utf-8 -*-
# Copyright (c) cclite.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Throwaway servers for the fault suite (a PostgreSQL cluster started with pg_ctl, a
redis-server, the project's Qdrant-compatible server), file systems to fill or freeze, and the
figures printed at the end."""

from __future__ import annotations

import dataclasses
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
import typing as t
import urllib.request

import pytest

from tests import throwaway_postgres
from tests.faults.harness import FIGURES, FULL
from tests.throwaway_postgres import free_port

PG_PASSWORD = "Faults-PG-Secret-4e1b"
REDIS_PASSWORD = "Faults-Redis-Secret-7c2a"
QDRANT_API_KEY = "Faults-Qdrant-Key-5e90"
ROWS = 400_000 if FULL else 50_000
KEYS = 300_000 if FULL else 50_000
POINTS = 20_000 if FULL else 2_000


def pytest_terminal_summary(terminalreporter: t.Any) -> None:
    for line in FIGURES.lines():
        terminalreporter.write_line(line)


@dataclasses.dataclass
class Postgres:
    port: int
    data: str
    rows: int = ROWS

    def psql(self, sql: str, database: str = "app") -> str:
        env = dict(os.environ, PGPASSWORD=PG_PASSWORD)
        out = subprocess.run(["psql", "-X", "-At", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "-d", database,
                              "-v", "ON_ERROR_STOP=1", "-c", sql], env=env, check=True, capture_output=True, text=True)
        return out.stdout.strip()

    def args(self, root: str, **extra: t.Any) -> dict[str, t.Any]:
        return dict({"database": "app", "mode": "host", "login_host": "127.0.0.1", "login_port": self.port,
                     "login_password": PG_PASSWORD, "backup_root": root, "lock_timeout": 120}, **extra)


@pytest.fixture(scope="session")
def postgres() -> t.Iterator[Postgres]:
    if not throwaway_postgres.installed():
        pytest.skip("PostgreSQL 15 is not installed (apt-get install postgresql-15)")
    with throwaway_postgres.cluster(PG_PASSWORD, "cclite-faults-pg-", ["fsync=off"]) as (port, data):
        server = Postgres(port, data)
        server.psql("CREATE DATABASE app", database="postgres")
        server.psql("CREATE DATABASE tiny", database="postgres")
        server.psql("CREATE TABLE items (id integer PRIMARY KEY, body text NOT NULL);"
                    "INSERT INTO items SELECT g, md5(g::text) || md5((g * 7)::text) FROM generate_series(1, %d) g;" % ROWS)
        server.psql("CREATE TABLE t (id integer); INSERT INTO t VALUES (1), (2);", database="tiny")
        yield server


@dataclasses.dataclass
class Redis:
    port: int
    directory: str
    keys: int = KEYS

    def cli(self, *command: str) -> str:
        env = dict(os.environ, REDISCLI_AUTH=REDIS_PASSWORD)
        return subprocess.run(["redis-cli", "-p", str(self.port), *command], env=env, check=True, capture_output=True,
                              text=True).stdout.strip()

    def args(self, root: str, **extra: t.Any) -> dict[str, t.Any]:
        return dict({"mode": "host", "login_host": "127.0.0.1", "login_port": self.port, "login_password": REDIS_PASSWORD,
                     "backup_root": root, "lock_timeout": 120}, **extra)


@pytest.fixture(scope="session")
def redis() -> t.Iterator[Redis]:
    if not shutil.which("redis-server"):
        pytest.skip("redis-server is not installed (apt-get install redis-server)")
    directory = tempfile.mkdtemp(prefix="cclite-faults-redis-", dir="/var/tmp")
    port = free_port()
    conf = os.path.join(directory, "redis.conf")
    with open(conf, "w", encoding="utf-8") as handle:
        handle.write("port %d\nbind 127.0.0.1\ndir %s\ndbfilename dump.rdb\nrequirepass %s\nsave \"\"\nappendonly no\n"
                     "daemonize no\nenable-debug-command local\n" % (port, directory, REDIS_PASSWORD))
    os.chmod(conf, 0o600)
    proc = subprocess.Popen(["redis-server", conf], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    server = Redis(port, directory)
    try:
        for _attempt in range(100):
            try:
                if server.cli("PING") == "PONG":
                    break
            except subprocess.CalledProcessError:
                pass
            time.sleep(0.05)
        server.cli("DEBUG", "POPULATE", str(KEYS), "key", "64")
        yield server
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        shutil.rmtree(directory, ignore_errors=True)


@dataclasses.dataclass
class Qdrant:
    url: str
    points: int = POINTS

    def request(self, method: str, path: str, body: t.Any = None) -> t.Any:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + path, data=data, method=method,
                                     headers={"api-key": QDRANT_API_KEY, "content-type": "application/json"})
        with urllib.request.urlopen(req, timeout=120) as response:
            return json.loads(response.read())

    def args(self, root: str, **extra: t.Any) -> dict[str, t.Any]:
        return dict({"url": self.url, "api_key": QDRANT_API_KEY, "backup_root": root, "lock_timeout": 120}, **extra)


@pytest.fixture(scope="session")
def qdrant(tmp_path_factory: pytest.TempPathFactory) -> t.Iterator[Qdrant]:
    """The project's Qdrant-compatible server (tests/qdrant_server, Qdrant Edge storage) with one
    collection of POINTS points."""
    try:
        import qdrant_edge  # noqa: F401  # pylint: disable=unused-import,import-outside-toplevel
    except ImportError:
        pytest.skip("qdrant-edge-py is not installed (the test server stores points with it)")
    storage = str(tmp_path_factory.mktemp("qdrant-storage"))
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    # the server takes its key on the command line only: a launcher adds it from the environment,
    # so that the suite's argv watch sees no secret that is not the collection's doing
    launcher = ("import os, runpy, sys; sys.argv[1:1] = ['--api-key', os.environ.pop('FAULTS_QDRANT_KEY')]; "
                "runpy.run_module('tests.qdrant_server', run_name='__main__', alter_sys=True)")
    proc = subprocess.Popen([sys.executable, "-c", launcher, "--host", "127.0.0.1", "--port", "0", "--storage", storage, "--quiet"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, cwd=root, text=True,
                            env=dict(os.environ, FAULTS_QDRANT_KEY=QDRANT_API_KEY))
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        url = line.split(" listening on ", 1)[1].split()[0]
        server = Qdrant(url)
        server.request("PUT", "/collections/items", {"vectors": {"size": 8, "distance": "Cosine"}})
        rng = random.Random(7)
        for start in range(0, POINTS, 1000):
            points = [{"id": i + 1, "vector": [rng.random() for _d in range(8)], "payload": {"n": i}} for i in range(start, min(start + 1000, POINTS))]
            server.request("PUT", "/collections/items/points?wait=true", {"points": points})
        yield server
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@dataclasses.dataclass
class Mount:
    path: str

    def remount(self, options: str) -> None:
        subprocess.run(["mount", "-o", "remount,%s" % options, self.path], check=True, capture_output=True)


@pytest.fixture
def small_fs(tmp_path: t.Any) -> t.Iterator[t.Callable[[str], Mount]]:
    """A tmpfs of the size asked for (root only); skipped with the reason when mount fails."""
    mounted: list[str] = []

    def make(size: str) -> Mount:
        path = str(tmp_path / ("fs%d" % len(mounted)))
        os.mkdir(path)
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=%s,mode=0700" % size, "tmpfs", path], capture_output=True, text=True, check=False)
        if done.returncode != 0:
            pytest.skip("cannot mount a %s tmpfs (needs root): %s" % (size, done.stderr.strip()))
        mounted.append(path)
        return Mount(path)

    yield make
    for path in mounted:
        subprocess.run(["umount", "-l", path], check=False, capture_output=True)
