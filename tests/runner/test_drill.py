# -*- coding: utf-8 -*-
# Copyright (c) cclite.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Restore drills on the guide's topology (the stores only in containers, none of their tools on
the managed host), through the shipped playbooks as AWX runs them: ``verify.yml -e
verify_level=drill`` passes for all three stores without starting anything on, connecting to or
writing into the production containers; a dump with one table's rows cut (sha256 rewritten to
match) fails naming store, table and counts; a drill that cannot run fails the run and says why.

The stack is this test's own (containers ``cclite-drilltest-*`` from cc-lite-stack:bookworm):
run it under ``flock /tmp/cclite-docker-tests.lock`` beside the other container tests.
"""

from __future__ import annotations

import glob
import gzip
import hashlib
import json
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
import typing as t
import urllib.request

import pytest
import yaml

from tests.runner.conftest import ROOT, Capture, run_playbook

IMAGE = os.environ.get("STACK_IMAGE", "cc-lite-stack:bookworm")
PREFIX = "cclite-drilltest"
NET = PREFIX
STORES = ("postgres", "redis", "qdrant")
DATA_DIRS = {"postgres": "/var/lib/postgresql/15/main", "redis": "/data", "qdrant": "/qdrant/storage"}
# what the guide's managed host must not need: the datastores' own tools
TOOLS = ("psql", "pg_dump", "pg_restore", "pg_ctl", "initdb", "pg_ctlcluster", "pg_isready", "redis-cli", "redis-server",
         "redis-check-rdb", "redis-check-aof", "qdrant")
USERS, CONVERSATIONS, SESSIONS, POINTS = 400, 250, 60, 40


def docker(*args: str, check: bool = True, stdin: str | None = None) -> str:
    out = subprocess.run(["docker", *args], input=stdin, capture_output=True, text=True, check=False)
    if check and out.returncode != 0:
        raise AssertionError("docker %s: %s" % (" ".join(args), out.stderr))
    return out.stdout


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait(what: str, probe: t.Callable[[], bool], seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if probe():
                return
        except (AssertionError, OSError):
            pass
        time.sleep(0.5)
    raise AssertionError("%s did not come up: %s" % (what, docker("logs", "--tail", "20", "%s-%s" % (PREFIX, what), check=False)))


class Stack:
    """The guide's containers, filled with users and conversations, sessions with TTLs, and a collection."""

    def __init__(self, base: str) -> None:
        self.secrets = {"POSTGRES_PASSWORD": "pg-" + secrets.token_hex(8), "REDIS_PASSWORD": "rd-" + secrets.token_hex(8),
                        "QDRANT_API_KEY": "qd-" + secrets.token_hex(8)}
        self.envfile = os.path.join(base, "stack.env")
        with open(self.envfile, "w", encoding="utf-8") as handle:
            os.chmod(self.envfile, 0o600)
            handle.write("".join("%s=%s\n" % kv for kv in self.secrets.items()))
        self.qdrant_port = free_port()

    def name(self, store: str) -> str:
        return "%s-%s" % (PREFIX, store)

    def up(self) -> None:
        self.down()
        docker("network", "create", NET)
        for store in STORES:
            ports = ["-p", "127.0.0.1:%d:6333" % self.qdrant_port] if store == "qdrant" else []
            docker("run", "-d", "--name", self.name(store), "--network", NET, "--env-file", self.envfile, *ports, IMAGE, store)
        wait("postgres", lambda: "1" in self.psql("SELECT 1", "postgres"))
        wait("redis", lambda: self.redis("PING") == "PONG")
        wait("qdrant", lambda: self.qdrant("GET", "/collections") is not None)

    def down(self) -> None:
        for store in STORES:
            docker("rm", "-f", "-v", self.name(store), check=False)
        docker("network", "rm", NET, check=False)

    def psql(self, sql: str, database: str = "operator_demo") -> str:
        return docker("exec", "-i", "-u", "postgres", self.name("postgres"), "psql", "-X", "-At", "-v", "ON_ERROR_STOP=1",
                      "-d", database, "-f", "-", stdin=sql).strip()

    def redis(self, *args: str) -> str:
        # the password reaches redis-cli through the container's own environment, not argv
        return docker("exec", self.name("redis"), "sh", "-c", 'REDISCLI_AUTH="$REDIS_PASSWORD" redis-cli --no-auth-warning "$@"',
                      "redis-cli", *args).strip()

    def qdrant(self, method: str, path: str, body: t.Any = None) -> t.Any:
        request = urllib.request.Request(
            "http://127.0.0.1:%d%s" % (self.qdrant_port, path), method=method,
            data=json.dumps(body).encode() if body is not None else None,
            headers={"api-key": self.secrets["QDRANT_API_KEY"], "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())["result"]

    def fill(self) -> None:
        self.psql("CREATE DATABASE operator_demo", "postgres")
        self.psql(
            "CREATE TABLE users (id serial PRIMARY KEY, email text NOT NULL);"
            "CREATE TABLE conversations (id serial PRIMARY KEY, user_id int REFERENCES users, title text);"
            "INSERT INTO users (email) SELECT 'agent' || g || '@example.com' FROM generate_series(1, %d) g;"
            "INSERT INTO conversations (user_id, title) SELECT 1 + g %% %d, 'chat ' || g FROM generate_series(1, %d) g;"
            % (USERS, USERS, CONVERSATIONS)
        )
        # every database (template1's catalogs too): nothing left for autovacuum to write while the drill runs
        docker("exec", "-u", "postgres", self.name("postgres"), "vacuumdb", "--all", "--analyze", "--quiet")
        lines = "".join("SET session:%d user-%d EX 86400\n" % (i, i) for i in range(SESSIONS))
        lines += "SELECT 1\n" + "".join("HSET profile:%d name agent%d\n" % (i, i) for i in range(20))
        docker("exec", "-i", self.name("redis"), "sh", "-c", 'REDISCLI_AUTH="$REDIS_PASSWORD" redis-cli --no-auth-warning >/dev/null',
               stdin=lines)
        self.qdrant("PUT", "/collections/kb", {"vectors": {"size": 4, "distance": "Cosine"}})
        self.qdrant("PUT", "/collections/kb/points?wait=true", {"points": [
            {"id": i, "vector": [1.0 + i, 0.5, 0.25, 0.125], "payload": {"doc": "article %d" % i}} for i in range(1, POINTS + 1)]})

    def state(self, checkpoint: bool = False) -> dict[str, t.Any]:
        """What must not change while a drill runs: each data directory (names, sizes, mtimes;
        a write to PostgreSQL shows in its WAL at once) and the clients each server has had.
        ``checkpoint`` first flushes what earlier steps left, so that only the drill's time is seen."""
        if checkpoint:
            self.psql("CHECKPOINT", "postgres")
        state: dict[str, t.Any] = {}
        for store, path in DATA_DIRS.items():
            # files only; PostgreSQL's relcache init files are rewritten by any new session, the test's own too
            listing = docker("exec", self.name(store), "find", path, "-type", "f", "-printf", "%p %s %T@\n").splitlines()
            # and its WAL takes the bgwriter's periodic running-transactions record after a checkpoint:
            # writes show in the counters of rows written below instead
            state["files " + store] = sorted(line for line in listing if "/pg_internal.init " not in line and "/pg_wal/" not in line)
        # client backends other than the one asking; Redis' count of connections ever accepted
        state["postgres rows written"] = self.psql(
            "SELECT pg_stat_force_next_flush(); SELECT sum(tup_inserted + tup_updated + tup_deleted) FROM pg_stat_database", "postgres")
        state["postgres clients"] = self.psql(
            "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()", "postgres")
        state["redis connections"] = int(self.redis("INFO", "stats").split("total_connections_received:")[1].split()[0])
        return state


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> t.Iterator[Stack]:
    if shutil.which("docker") is None or subprocess.run(["docker", "image", "inspect", IMAGE], capture_output=True, check=False).returncode:
        if os.environ.get("CI"):  # make runner builds it: a drill test that silently skips could not fail
            pytest.fail("needs Docker and the image %s (make stack-images)" % IMAGE)
        pytest.skip("needs Docker and the image %s (make stack-images)" % IMAGE)
    stack = Stack(str(tmp_path_factory.mktemp("drill-stack")))
    try:
        stack.up()
        stack.fill()
        yield stack
    finally:
        stack.down()


@pytest.fixture(scope="module")
def guide_path(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A PATH for the managed host with everything of the system but the datastores' tools."""
    bin_dir = str(tmp_path_factory.mktemp("guide-bin"))
    for directory in ("/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"):
        for path in glob.glob(os.path.join(directory, "*")):
            name = os.path.basename(path)
            if name in TOOLS or name.startswith(("pg_", "redis-")) or os.path.lexists(os.path.join(bin_dir, name)):
                continue
            os.symlink(os.path.realpath(path), os.path.join(bin_dir, name))
    return os.path.join(ROOT, ".venv", "bin") + os.pathsep + bin_dir


class Site:
    def __init__(self, base: str, stack: Stack, capture: Capture, path: str) -> None:
        self.root, self.metrics = os.path.join(base, "backups"), os.path.join(base, "metrics")
        self.capture, self.path = capture, path
        self.inventory = os.path.join(base, "hosts.yml")
        with open(self.inventory, "w", encoding="utf-8") as handle:
            yaml.safe_dump({"cclite_backup": {
                "hosts": {"localhost": {"ansible_connection": "local", "ansible_python_interpreter": os.path.join(ROOT, ".venv", "bin", "python")}},
                "vars": {
                    "backup_root": self.root, "backup_metrics_dir": self.metrics,
                    "backup_webhook_url": capture.base + "/hook", "backup_webhook_format": "json",
                    "postgresql_backup_container": stack.name("postgres"),
                    "postgresql_backup_login_password": stack.secrets["POSTGRES_PASSWORD"],
                    "postgresql_backup_databases": ["operator_demo"],
                    "redis_backup_container": stack.name("redis"),
                    "redis_backup_login_password": stack.secrets["REDIS_PASSWORD"],
                    "qdrant_backup_url": "http://127.0.0.1:%d" % stack.qdrant_port,
                    "qdrant_backup_api_key": stack.secrets["QDRANT_API_KEY"],
                    "qdrant_backup_drill_container": stack.name("qdrant"),
                    "drill_memory": "512m",
                },
            }}, handle)

    def run(self, playbook: str, path: str | None = None, **extravars: t.Any) -> t.Any:
        self.capture.take()
        return run_playbook(self.inventory, playbook, extravars, envvars={"PATH": path or self.path})

    def last_report(self, kind: str = "verify") -> dict[str, t.Any]:
        newest = sorted(glob.glob(os.path.join(self.root, "logs", "%s_*.json" % kind)), key=os.path.getmtime)[-1]
        with open(newest, encoding="utf-8") as handle:
            return json.load(handle)

    def webhook(self) -> dict[str, t.Any]:
        hooks = [r for r in self.capture.take() if r.path == "/hook"]
        assert len(hooks) == 1
        return hooks[0].json()


@pytest.fixture(scope="module")
def site(stack: Stack, capture: Capture, guide_path: str, tmp_path_factory: pytest.TempPathFactory) -> Site:
    site = Site(str(tmp_path_factory.mktemp("drill-site")), stack, capture, guide_path)
    job = site.run("backup")
    assert job.status == "successful", job.stdout[-3000:]
    return site


def drill_leftovers() -> list[str]:
    return (docker("ps", "-aq", "--filter", "label=cclite.backup.drill").split()
            + docker("network", "ls", "-q", "--filter", "label=cclite.backup.drill").split())


def test_drill_of_all_stores_passes_and_leaves_production_alone(stack: Stack, site: Site) -> None:
    before = stack.state(checkpoint=True)
    since = docker("info", "-f", "{{.SystemTime}}").strip()
    job = site.run("verify", verify_level="drill")
    until = docker("info", "-f", "{{.SystemTime}}").strip()
    after = stack.state()
    assert job.status == "successful", job.stdout[-4000:]
    assert "All backups are healthy!" in job.stdout

    # nothing started on, connected to or written into production
    events = docker("events", "--since", since, "--until", until, "--format", "{{.Actor.Attributes.name}} {{.Action}}",
                    *[a for s in STORES for a in ("--filter", "container=%s" % stack.name(s))])
    assert events.strip() == "", events
    for store in STORES:
        changed = set(after["files " + store]) ^ set(before["files " + store])
        assert not changed and after["files " + store], (store, sorted(changed))
    assert after["postgres clients"] == before["postgres clients"] == "0"
    assert after["postgres rows written"] == before["postgres rows written"]
    assert after["redis connections"] == before["redis connections"] + 1  # only state()'s own INFO
    assert drill_leftovers() == []

    report = site.last_report()
    drills = {d["store"]: d for d in report["drills"]}
    assert sorted(drills) == ["postgresql", "qdrant", "redis"]
    for store, drill in drills.items():
        assert drill["status"] == "ok" and drill["passed"] and drill["ran"], drill
        assert drill["restore_seconds"] > 0 and drill["finished"] >= drill["started"], drill
        assert "cclite-drill-%s-" % store in drill["server"] and "network cclite-drill-" in drill["server"]
    assert drills["postgresql"]["compared"]["tables"] == {"public.users": USERS, "public.conversations": CONVERSATIONS}
    assert drills["postgresql"]["compared"]["sample"] == {"rows": 6, "tables": 2}
    assert drills["redis"]["compared"]["databases"]["db0"]["keys"] == SESSIONS
    assert drills["redis"]["compared"]["databases"]["db1"]["keys"] == 20
    assert drills["redis"]["compared"]["sample"]["keys"] >= 2
    assert [(c["name"], c["points_count"]) for c in drills["qdrant"]["compared"]["collections"]] == [("kb", POINTS)]
    assert drills["qdrant"]["compared"]["sample"]["points"] == 3

    hook = site.webhook()
    assert hook["status"] == "ok"
    shown = [r for h in hook["hosts"] for r in h["results"] if r["action"] == "drill"]
    assert sorted(r["store"] for r in shown) == ["postgresql", "qdrant", "redis"] and all(r["drill"]["passed"] for r in shown)
    assert not any(v in json.dumps(hook) + job.stdout for v in stack.secrets.values())

    with open(os.path.join(site.metrics, "cclite_backup.prom"), encoding="utf-8") as handle:
        metrics = handle.read()
    for store in ("postgresql", "redis", "qdrant"):
        for name in ("cclite_backup_drill_last_success_timestamp_seconds", "cclite_backup_drill_duration_seconds"):
            line = [m for m in metrics.splitlines() if m.startswith(name + "{") and 'store="%s"' % store in m]
            assert len(line) == 1 and float(line[0].split()[-1]) > 0, (name, store, metrics)


def cut_rows(path: str, table: str, keep: int) -> None:
    """Cut a table's COPY block to ``keep`` rows and rewrite the manifest's (and journal's) size and sha256 to match."""
    with gzip.open(path, "rb") as handle:
        lines = handle.read().split(b"\n")
    start = next(i for i, line in enumerate(lines) if line.startswith(b"COPY public.%s " % table.encode()))
    end = lines.index(b"\\.", start)
    lines[start + 1 + keep:end] = []
    with open(path, "wb") as handle:
        handle.write(gzip.compress(b"\n".join(lines)))
    data = open(path, "rb").read()
    digest, size = hashlib.sha256(data).hexdigest(), len(data)
    manifest_path = path + ".manifest.json"
    with open(manifest_path, encoding="utf-8") as handle:
        manifest = json.load(handle)
    old = manifest["artifact"]["sha256"]
    manifest["artifact"].update(sha256=digest, size=size)
    with open(manifest_path, "w", encoding="utf-8") as handle:
        json.dump(manifest, handle)
    journal = os.path.join(os.path.dirname(path), ".catalog.jsonl")
    if os.path.exists(journal):
        text = open(journal, encoding="utf-8").read().replace(old, digest)
        records = [json.loads(line) for line in text.splitlines() if line.strip()]
        for record in records:
            if record.get("sha256") == digest:
                record["size"] = size
        with open(journal, "w", encoding="utf-8") as handle:
            handle.write("".join(json.dumps(r) + "\n" for r in records))


def test_a_dump_with_rows_cut_and_its_checksum_rewritten_fails_the_drill(stack: Stack, site: Site) -> None:
    newest = sorted(glob.glob(os.path.join(site.root, "postgresql", "postgres_backup_*.sql.gz")))[-1]
    saved = tempfile.mkdtemp(prefix="cclite-drill-orig-")
    for path in glob.glob(newest + "*") + glob.glob(os.path.join(site.root, "postgresql", ".catalog.jsonl")):
        shutil.copy2(path, saved)
    try:
        cut_rows(newest, "conversations", CONVERSATIONS - 50)
        full = site.run("verify", backup_stores=["postgresql"])  # the checks that read the file cannot see it
        assert full.status == "successful", full.stdout[-3000:]
        job = site.run("verify", verify_level="drill", backup_stores=["postgresql"])
        assert job.status == "failed"
        assert "All backups are healthy!" not in job.stdout
        drill = site.last_report()["drills"][0]
        assert drill["status"] == "failed" and drill["ran"] and not drill["passed"]
        expected = "table public.conversations has %d rows, the manifest says %d" % (CONVERSATIONS - 50, CONVERSATIONS)
        assert expected in drill["error"] and "postgresql drill failed" in drill["error"], drill["error"]
        assert expected in job.stdout
        hook = site.webhook()
        assert hook["status"] == "failed" and any(expected in e for e in hook["errors"])
        assert drill_leftovers() == []
    finally:
        for path in glob.glob(os.path.join(saved, "*")) + glob.glob(os.path.join(saved, ".*")):
            shutil.copy2(path, os.path.join(site.root, "postgresql"))
        shutil.rmtree(saved)


def test_a_drill_that_cannot_run_fails_the_run_and_says_why(stack: Stack, site: Site, guide_path: str, tmp_path: t.Any) -> None:
    job = site.run("verify", verify_level="drill", postgresql_backup_drill_image="cclite-no-such-image:none",
                   redis_backup_drill_memory="64t")
    assert job.status == "failed" and "All backups are healthy!" not in job.stdout
    drills = {d["store"]: d for d in site.last_report()["drills"]}
    assert drills["postgresql"]["ran"] is False and "the postgresql drill cannot run: the image cclite-no-such-image:none" in drills["postgresql"]["error"]
    assert drills["redis"]["ran"] is False and "the redis drill cannot run: it needs 67108864 MiB of memory" in drills["redis"]["error"]
    assert drills["qdrant"]["passed"] is True  # one store's drill not running does not hide another's result
    hook = site.webhook()
    assert hook["status"] == "failed"
    assert any("postgresql drill cannot run" in e for e in hook["errors"]) and any("redis drill cannot run" in e for e in hook["errors"])

    # no docker on the managed host: the tool is missing
    no_docker = str(tmp_path / "bin")
    os.mkdir(no_docker)
    for entry in guide_path.split(os.pathsep)[1:]:
        for path in glob.glob(os.path.join(entry, "*")):
            if os.path.basename(path) not in ("docker", "dockerd"):
                os.symlink(os.path.realpath(path), os.path.join(no_docker, os.path.basename(path)))
    job = site.run("verify", path=os.path.join(ROOT, ".venv", "bin") + os.pathsep + no_docker, verify_level="drill", backup_stores=["qdrant"])
    assert job.status == "failed" and "All backups are healthy!" not in job.stdout
    drill = site.last_report()["drills"][0]
    assert drill["ran"] is False and "the qdrant drill cannot run" in drill["error"] and "docker" in drill["error"], drill
    assert drill_leftovers() == []


def run_ids(root: str, store: str) -> list[str]:
    """The run ids of a store's backups, oldest first."""
    found = []
    for path in sorted(glob.glob(os.path.join(root, store, "*.manifest.json"))):
        with open(path, encoding="utf-8") as handle:
            found.append(json.load(handle).get("run_id"))
    return found


def test_a_drill_of_a_set_drills_its_files_and_a_set_that_is_not_complete_fails(stack: Stack, site: Site) -> None:
    complete = run_ids(site.root, "qdrant")[-1]
    job = site.run("backup", backup_stores=["postgresql"])  # a set of PostgreSQL only
    assert job.status == "successful", job.stdout[-3000:]
    partial = run_ids(site.root, "postgresql")[-1]
    assert partial != complete and partial not in run_ids(site.root, "redis") + run_ids(site.root, "qdrant")

    job = site.run("verify", verify_level="drill", verify_set=partial)
    assert job.status == "failed" and "All backups are healthy!" not in job.stdout
    why = ("backup set %s is not complete for postgresql, redis, qdrant: redis: no backup in the set; qdrant: no backup "
           "in the set" % partial)
    drills = {d["store"]: d for d in site.last_report()["drills"]}
    assert sorted(drills) == ["postgresql", "qdrant", "redis"]
    for drill in drills.values():  # nothing of a partial set is drilled: every drill did not run, and says why
        assert drill["status"] == "failed" and drill["ran"] is False and not drill["passed"], drill
        assert drill["set"] == partial and why in drill["why"], drill
    hook = site.webhook()
    assert hook["status"] == "failed" and any(why in e for e in hook["errors"])
    assert drill_leftovers() == []

    # a random older set needs one: the only complete set of qdrant is the newest
    job = site.run("verify", verify_level="drill", verify_set="random", backup_stores=["qdrant"])
    assert job.status == "failed" and "All backups are healthy!" not in job.stdout
    drill = site.last_report()["drills"][0]
    assert drill["ran"] is False and "verify_set=random needs a complete backup set of qdrant older than the newest" in drill["why"]
    site.webhook()

    # the older complete set: the drill restores that set's file, not the newest
    job = site.run("verify", verify_level="drill", verify_set=complete, backup_stores=["qdrant"])
    assert job.status == "successful" and "All backups are healthy!" in job.stdout, job.stdout[-3000:]
    drill = site.last_report()["drills"][0]
    assert drill["passed"] and drill["set"] == complete
    assert drill["backup"] == sorted(os.path.basename(p) for p in glob.glob(os.path.join(site.root, "qdrant", "*.tar.gz")))[-1]
    site.webhook()


def test_host_mode_drills_into_a_scratch_server_from_the_servers_binaries(postgres: t.Any, tmp_path: t.Any) -> None:
    """PostgreSQL on the host (mode host): the drill starts a scratch cluster from the server's own
    binaries on a free port in a temp directory; the production server gets no database."""
    from tests.runner.conftest import PG_PASSWORD  # the host server of the runner suite

    root = str(tmp_path / "backups")
    inventory = str(tmp_path / "hosts.yml")
    with open(inventory, "w", encoding="utf-8") as handle:
        yaml.safe_dump({"cclite_backup": {
            "hosts": {"localhost": {"ansible_connection": "local", "ansible_python_interpreter": os.path.join(ROOT, ".venv", "bin", "python")}},
            "vars": {"backup_root": root, "backup_metrics_dir": "", "backup_stores": ["postgresql"], "postgresql_backup_mode": "host",
                     "postgresql_backup_login_host": "127.0.0.1", "postgresql_backup_login_port": postgres.port,
                     "postgresql_backup_login_password": PG_PASSWORD, "postgresql_backup_databases": ["operator_demo"]},
        }}, handle)
    assert run_playbook(inventory, "backup", {}).status == "successful"
    databases = postgres.psql("SELECT string_agg(datname, ',' ORDER BY datname) FROM pg_database", "postgres")
    scratch_dirs = set(glob.glob("/var/tmp/cclite-drill-postgresql-*"))
    job = run_playbook(inventory, "verify", {"verify_level": "drill"})
    assert job.status == "successful" and "All backups are healthy!" in job.stdout, job.stdout[-3000:]
    newest = sorted(glob.glob(os.path.join(root, "logs", "verify_*.json")))[-1]
    with open(newest, encoding="utf-8") as handle:
        drill = json.load(handle)["drills"][0]
    assert drill["passed"] and drill["server"].startswith("a scratch PostgreSQL 15 in /var/tmp/cclite-drill-postgresql-")
    assert drill["compared"]["tables"] == {"public.users": int(postgres.psql("SELECT count(*) FROM users"))}
    assert drill["compared"]["sample"]["rows"] == 3
    assert postgres.psql("SELECT string_agg(datname, ',' ORDER BY datname) FROM pg_database", "postgres") == databases
    assert set(glob.glob("/var/tmp/cclite-drill-postgresql-*")) == scratch_dirs  # stopped and deleted
