# Copyright (c) cclite.backup contributors
# SPDX-License-Identifier: GPL-3.0-or-later
"""What the benches share: throwaway PostgreSQL and Redis servers, playbook runs, peak-RSS sampling."""

from __future__ import annotations

import glob
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PG_BIN = "/usr/lib/postgresql/15/bin"
PG_PASSWORD = "bench"
REDIS_PASSWORD = "bench-Redis-pw"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def sh(cmd: str, **kw: object) -> subprocess.CompletedProcess:
    """Run a bash pipeline with pipefail; secrets go through ``env``, never into ``cmd``."""
    return subprocess.run(["bash", "-o", "pipefail", "-c", cmd], check=True, **kw)  # noqa: S603


def timed(cmd: str, **kw: object) -> float:
    start = time.monotonic()
    sh(cmd, **kw)
    return time.monotonic() - start


def median(values: list[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def private_file(directory: str, name: str, content: str) -> str:
    """A 0600 file holding ``content`` (a password, extra vars with a password)."""
    path = os.path.join(directory, name)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(content)
    return path


def pg_env() -> dict:
    return dict(os.environ, PGPASSWORD=PG_PASSWORD, PGUSER="postgres", PGHOST="127.0.0.1")


# ---------------------------------------------------------------------------------------------
# PostgreSQL
# ---------------------------------------------------------------------------------------------

# What the benchmark databases hold (--data):
#   mixed   the stack's kinds of data, by size: 60 % messages (a paragraph or two of text, a
#           uuid, a timestamp, JSON metadata), 25 % knowledge-base articles (eight paragraphs),
#           15 % events (narrow rows: ids, a timestamp, a digest, a short line, JSON);
#   events  only the narrow event rows: the server formats many small values per MB, so
#           pg_dump itself is slow and the compressor matters less (the worst case for zstd).
DATA = ("mixed", "events")

# ~135 bytes of dump text per row.
EVENTS_SQL = """
    CREATE TABLE events (id bigint PRIMARY KEY, at timestamptz, digest text, body text, meta jsonb);
    INSERT INTO events
    SELECT g, timestamptz '2025-01-01' + g * interval '1 second', md5(g::text),
           'user ' || (g % 5000) || ' did action ' || (g % 37) || ' on item ' || (g * 7 % 100003),
           jsonb_build_object('k', g % 11, 'ok', g % 2 = 0)
      FROM generate_series(1, ROWS) g;
"""

# The text is real: paragraphs (blocks between blank lines) of the Python sources, comments and
# docstrings of this interpreter's standard library and of the venv's packages, up to 64 MB (far
# more than gzip's 32 KB or zstd -1's 512 KB window can find again). Random words will not do:
# gzip runs on them at half the speed it has on real text, which would flatter zstd. With a
# pinned venv the text is the same on every run. A message is one or two paragraphs, an article
# eight; their counts assume ~530 and ~2,300 bytes of dump text a row (1024 MB gives 1.2 GB).
POOL_BYTES = 64 * 1024 * 1024
TEXT_SQL = """
    CREATE TABLE messages (id bigint PRIMARY KEY, conversation_id uuid, sender text, created_at timestamptz,
                           body text, metadata jsonb);
    INSERT INTO messages
    SELECT g, md5((g / 20)::text)::uuid, 'user' || (g::bigint * 7919 % 50000), timestamptz '2025-01-01' + g * interval '7 seconds',
           CASE WHEN g % 3 = 0 THEN a.text ELSE a.text || E'\\n\\n' || b.text END,
           jsonb_build_object('channel', (ARRAY['web', 'email', 'chat'])[1 + g % 3], 'lang', 'en', 'tokens', length(a.text) / 4)
      FROM generate_series(1, MESSAGES) g
      JOIN paragraphs a ON a.p = 1 + (g::bigint * 7919) % PARAGRAPHS
      JOIN paragraphs b ON b.p = 1 + (g::bigint * 104729) % PARAGRAPHS;
    CREATE TABLE articles (id bigint PRIMARY KEY, title text, body text, updated_at timestamptz, tags jsonb);
    INSERT INTO articles
    SELECT g, left(a.text, 60),
           (SELECT string_agg((SELECT x.text FROM paragraphs x WHERE x.p = 1 + (g::bigint * 7919 + k * 104729) % PARAGRAPHS),
                              E'\\n\\n' ORDER BY k)
              FROM generate_series(0, 7) k),
           timestamptz '2025-01-01' + g * interval '1 hour', jsonb_build_array('kb', 'topic' || g % 40)
      FROM generate_series(1, ARTICLES) g
      JOIN paragraphs a ON a.p = 1 + (g::bigint * 31) % PARAGRAPHS;
    DROP TABLE paragraphs;
"""


def paragraphs() -> tuple[bytes, int]:
    """The text pool as COPY data (paragraph number, text) and the number of paragraphs."""
    roots = [sysconfig.get_paths()["stdlib"], sysconfig.get_paths()["purelib"]]
    skip = {"site-packages", "test", "tests", "__pycache__", "idlelib", "lib2to3"}
    escape = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})
    lines, size = [], 0
    for root in roots:
        for where, dirs, files in os.walk(root):
            dirs[:] = sorted(d for d in dirs if d not in skip)
            for name in sorted(f for f in files if f.endswith((".py", ".txt", ".rst", ".md"))):
                with open(os.path.join(where, name), encoding="utf-8", errors="replace") as handle:
                    text = handle.read().replace("\x00", "")
                for block in text.split("\n\n"):
                    block = block.strip("\n")
                    if len(block) < 40:
                        continue
                    lines.append("%d\t%s\n" % (len(lines) + 1, block.translate(escape)))
                    size += len(block)
                    if size >= POOL_BYTES:
                        return "".join(lines).encode(), len(lines)
    return "".join(lines).encode(), len(lines)


def psql(port: int, sql: str, db: str = "postgres", stdin: bytes = b"") -> str:
    out = subprocess.run(
        ["runuser", "-u", "postgres", "--", "psql", "-X", "-At", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1",
         "-p", str(port), "-d", db, "-c", sql],
        check=True, capture_output=True, input=stdin, cwd="/", env=pg_env(),
    )
    return out.stdout.decode().strip()


class Cluster:
    """A throwaway PostgreSQL 15 cluster in a temp dir, password auth, listening on 127.0.0.1."""

    def __init__(self, port: int, settings: tuple[str, ...] = ()) -> None:
        self.port = port
        self.settings = settings
        self.dir = tempfile.mkdtemp(prefix="cclite-bench-pg-")
        self.data = os.path.join(self.dir, "data")
        os.chmod(self.dir, 0o755)
        shutil.chown(self.dir, "postgres")

    def start(self) -> None:
        pw = private_file(self.dir, "pw", PG_PASSWORD)
        shutil.chown(pw, "postgres")
        run = ["runuser", "-u", "postgres", "--"]
        subprocess.run(run + [PG_BIN + "/initdb", "-D", self.data, "-U", "postgres", "--pwfile", pw,
                              "--auth=scram-sha-256", "-E", "UTF8", "--locale=C.UTF-8"],
                       check=True, cwd="/", stdout=subprocess.DEVNULL)
        self.pg_ctl("start")

    def pg_ctl(self, action: str, settings: tuple[str, ...] = ()) -> None:
        """pg_ctl start or restart, with the cluster's options and ``settings`` (name=value) on top."""
        options = "-p %d -k %s -c listen_addresses=127.0.0.1 -c shared_buffers=256MB" % (self.port, self.dir)
        options += "".join(" -c " + s for s in self.settings + settings)
        subprocess.run(["runuser", "-u", "postgres", "--", PG_BIN + "/pg_ctl", "-D", self.data, "-w", "-m", "fast",
                        "-l", self.dir + "/log", "-o", options, action], check=True, cwd="/", stdout=subprocess.DEVNULL)

    def stop(self) -> None:
        subprocess.run(["runuser", "-u", "postgres", "--", PG_BIN + "/pg_ctl", "-D", self.data, "-m", "fast",
                        "stop"], cwd="/", stdout=subprocess.DEVNULL, check=False)
        shutil.rmtree(self.dir, ignore_errors=True)

    def make_db(self, name: str, size_mb: float, data: str) -> int:
        """A database of about ``size_mb`` MB of dump text; ``data`` says what it holds (see DATA)."""
        psql(self.port, "CREATE DATABASE %s" % name)
        size = size_mb * 1024 * 1024
        shares = {"mixed": {"messages": 0.60, "articles": 0.25, "events": 0.15}, "events": {"events": 1.0}}[data]
        if "messages" in shares:
            psql(self.port, "CREATE UNLOGGED TABLE paragraphs (p int PRIMARY KEY, text text)", name)
            pool, count = paragraphs()
            psql(self.port, "COPY paragraphs FROM STDIN", name, stdin=pool)
            psql(self.port, "ANALYZE paragraphs", name)
            psql(self.port, TEXT_SQL.replace("PARAGRAPHS", str(count))
                 .replace("MESSAGES", str(max(100, int(size * shares["messages"]) // 530)))
                 .replace("ARTICLES", str(max(10, int(size * shares["articles"]) // 2300))), name)
        psql(self.port, EVENTS_SQL.replace("ROWS", str(max(1000, int(size * shares["events"]) // 135))), name)
        return int(psql(self.port, "SELECT pg_database_size('%s')" % name))

    def make_rows_db(self, name: str, rows: int) -> None:
        """A database with one table of ``rows`` short rows (the fixed-cost database)."""
        psql(self.port, "CREATE DATABASE %s" % name)
        psql(self.port, "CREATE TABLE t (id int PRIMARY KEY, v text); "
                        "INSERT INTO t SELECT g, md5(g::text) FROM generate_series(1, %d) g" % rows, name)


# ---------------------------------------------------------------------------------------------
# Redis
# ---------------------------------------------------------------------------------------------

def redis_cli(port: int, *args: str) -> str:
    out = subprocess.run(
        ["redis-cli", "-p", str(port), *args], check=True, capture_output=True, text=True,
        env=dict(os.environ, REDISCLI_AUTH=REDIS_PASSWORD),
    )
    if out.stdout.startswith("ERR"):
        raise RuntimeError("redis-cli %s: %s" % (" ".join(args), out.stdout))
    return out.stdout.strip()


class RedisServer:
    """A throwaway redis-server on a free port, in its own directory, run from a config file.

    With ``service=True`` it also gets a SysV init script (/etc/init.d/cclite-bench-redis-PORT)
    so that the restore, which stops and starts the service, can run against it.
    """

    def __init__(self, service: bool = False) -> None:
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="cclite-bench-redis-")
        self.conf = os.path.join(self.dir, "redis.conf")
        self.pidfile = os.path.join(self.dir, "redis.pid")
        self.rdb = os.path.join(self.dir, "dump.rdb")
        self.service = "cclite-bench-redis-%d" % self.port if service else ""
        private_file(self.dir, "redis.conf", "\n".join([
            "port %d" % self.port, "bind 127.0.0.1", "dir %s" % self.dir, 'save ""', "appendonly no",
            "requirepass %s" % REDIS_PASSWORD, "enable-debug-command yes", "daemonize yes",
            "pidfile %s" % self.pidfile, "logfile %s" % os.path.join(self.dir, "redis.log"), ""]))
        if self.service:
            with open("/etc/init.d/" + self.service, "w") as f:
                f.write(INIT_SCRIPT.replace("CONF", self.conf).replace("PIDFILE", self.pidfile))
            os.chmod("/etc/init.d/" + self.service, 0o755)
        self.start()

    def start(self) -> None:
        subprocess.run(["redis-server", self.conf], check=True, stdout=subprocess.DEVNULL)
        self.wait_ready()

    def wait_ready(self) -> None:
        for _attempt in range(600):
            try:
                if redis_cli(self.port, "PING") == "PONG":
                    return
            except (subprocess.CalledProcessError, RuntimeError):
                pass
            time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def shutdown(self) -> None:
        """Stop the server and wait until it has exited."""
        try:
            with open(self.pidfile) as f:
                pid = int(f.read())
        except (OSError, ValueError):
            return
        try:
            os.kill(pid, 15)
        except ProcessLookupError:
            return
        for _attempt in range(600):
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.05)

    def populate(self, keys: int, value_size: int) -> dict:
        first = keys * 9 // 10
        redis_cli(self.port, "DEBUG", "POPULATE", str(first), "key", str(value_size))
        redis_cli(self.port, "-n", "1", "DEBUG", "POPULATE", str(keys - first), "session", str(value_size))
        # a TTL on every key of db1, far enough away not to expire during the benchmark
        redis_cli(self.port, "-n", "1", "EVAL",
                  "local c = '0' repeat local r = redis.call('SCAN', c, 'COUNT', 1000) c = r[1] "
                  "for _, k in ipairs(r[2]) do redis.call('EXPIRE', k, 86400) end until c == '0' return 1", "0")
        return {line.split(":")[0]: line.split(":")[1]
                for line in redis_cli(self.port, "INFO", "keyspace").splitlines() if ":" in line}

    def stop(self) -> None:
        self.shutdown()
        if self.service:
            try:
                os.unlink("/etc/init.d/" + self.service)
            except OSError:
                pass
        shutil.rmtree(self.dir, ignore_errors=True)


INIT_SCRIPT = """#!/bin/sh
# A throwaway Redis of the cclite.backup bench (bench/_common.py), removed when the bench ends.
case "$1" in
  start) /usr/bin/redis-server CONF ;;
  stop)
    pid=$(cat PIDFILE 2>/dev/null) || exit 0
    kill "$pid" 2>/dev/null || exit 0
    for _ in $(seq 600); do kill -0 "$pid" 2>/dev/null || exit 0; sleep 0.1; done
    exit 1 ;;
  status) [ -f PIDFILE ] && kill -0 "$(cat PIDFILE)" 2>/dev/null ;;
  *) exit 2 ;;
esac
"""


# ---------------------------------------------------------------------------------------------
# Playbook runs and module memory
# ---------------------------------------------------------------------------------------------

class PeakRss:
    """Samples VmHWM of every module process (AnsiballZ_<module>) while a playbook runs, per module."""

    NEEDLE = re.compile(rb"AnsiballZ_(\w+?)\.py")

    def __init__(self, remote_tmp: str = "") -> None:
        self.root_pid = 0  # set to the playbook's pid: only its descendants count (other jobs may run modules too)
        # a module run in the background (the backup_job action: async_wrapper) leaves the playbook's
        # process tree when it daemonizes; it is known by the run's own remote temp dir in its command line
        self.remote_tmp = remote_tmp.encode()
        self.peak_kb: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            for pid in os.listdir("/proc"):
                if not pid.isdigit():
                    continue
                try:
                    with open("/proc/%s/cmdline" % pid, "rb") as f:
                        cmdline = f.read()
                    found = self.NEEDLE.search(cmdline)
                    if not found:
                        continue
                    if not (self.remote_tmp and self.remote_tmp in cmdline) and not self._descends(int(pid)):
                        continue
                    module = found.group(1).decode()
                    with open("/proc/%s/status" % pid) as f:
                        for line in f:
                            if line.startswith("VmHWM:"):
                                self.peak_kb[module] = max(self.peak_kb.get(module, 0), int(line.split()[1]))
                except OSError:
                    continue
            time.sleep(0.05)

    def _descends(self, pid: int) -> bool:
        while pid > 1:
            if pid == self.root_pid:
                return True
            with open("/proc/%d/stat" % pid) as f:
                pid = int(f.read().rsplit(")", 1)[1].split()[1])
        return False

    def peaks_mb(self) -> dict[str, float]:
        return {module: kb / 1024.0 for module, kb in self.peak_kb.items()}

    def __enter__(self) -> "PeakRss":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


class PlaybookFailed(RuntimeError):
    pass


def checkout(ref: str, parent: str) -> str:
    """The collection at git ``ref`` in a folder under ``parent``, runnable by :func:`run_playbook`
    (its ``.collections`` names it cclite.backup, the other collections are this checkout's)."""
    tree = os.path.join(parent, "tree-" + ref)
    os.makedirs(tree)
    archive = subprocess.run(["git", "-C", ROOT, "archive", ref], check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", tree], input=archive, check=True)
    namespaces = os.path.join(tree, ".collections", "ansible_collections")
    os.makedirs(os.path.join(namespaces, "cclite"))
    os.symlink(tree, os.path.join(namespaces, "cclite", "backup"))
    for name in os.listdir(os.path.join(ROOT, ".collections", "ansible_collections")):
        if name != "cclite":
            os.symlink(os.path.join(ROOT, ".collections", "ansible_collections", name), os.path.join(namespaces, name))
    return tree


def run_playbook(name: str, work: str, hosts: dict[str, dict], extra: dict, forks: int = 5,
                 tree: str = ROOT, playbook: str = "") -> tuple[float, dict, str]:
    """Run playbooks/NAME against local-connection ``hosts`` (host vars each); wall time, peak RSS per module, output.

    The extra vars (which carry passwords) go through a 0600 file (``-e @file``), never argv.
    ``tree`` is the checkout whose playbooks and collection run (another one: see :func:`checkout`);
    ``playbook``, a playbook file elsewhere that runs instead (NAME then only names its files).
    """
    os.makedirs(work, exist_ok=True)
    inventory = os.path.join(work, "inventory.json")
    with open(inventory, "w") as f:
        json.dump({"cclite_backup": {"hosts": {
            host: dict({"ansible_connection": "local", "ansible_python_interpreter": sys.executable}, **hostvars)
            for host, hostvars in hosts.items()}}}, f)
    extra_file = private_file(work, "extra-%s.json" % name.split(".")[0], json.dumps(extra))
    remote_tmp = tempfile.mkdtemp(prefix="cclite-bench-rtmp-")
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=os.path.join(tree, ".collections"), ANSIBLE_STDOUT_CALLBACK="json",
               ANSIBLE_REMOTE_TMP=remote_tmp)
    start = time.monotonic()
    with PeakRss(remote_tmp) as peak, subprocess.Popen(
        [os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), "-i", inventory, "-f", str(forks),
         playbook or os.path.join(tree, "playbooks", name), "-e", "@" + extra_file],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    ) as proc:
        peak.root_pid = proc.pid
        stdout, stderr = proc.communicate()
    wall = time.monotonic() - start
    os.unlink(extra_file)
    shutil.rmtree(remote_tmp, ignore_errors=True)
    if proc.returncode != 0:
        raise PlaybookFailed("%s failed (rc %d):\n%s%s" % (name, proc.returncode, stdout[-3000:], stderr[-2000:]))
    return wall, peak.peaks_mb(), stdout


def task_seconds(output: str, name: str) -> float:
    """Duration of one task, from the json callback's output."""
    for play in json.loads(output)["plays"]:
        for task in play["tasks"]:
            if task["task"]["name"].split(" : ")[-1] == name:
                duration = task["task"]["duration"]
                start = time.mktime(time.strptime(duration["start"][:19], "%Y-%m-%dT%H:%M:%S")) + float("0." + duration["start"][20:26])
                end = time.mktime(time.strptime(duration["end"][:19], "%Y-%m-%dT%H:%M:%S")) + float("0." + duration["end"][20:26])
                return end - start
    raise KeyError(name)


def newest_manifest(root: str, store: str) -> tuple[str, dict]:
    """The newest regular backup (not a safety copy) of ``store`` under ``root``: its path and manifest."""
    found = [p for p in glob.glob(os.path.join(root, store, "**", "*.manifest.json"), recursive=True)
             if "/safety/" not in p]
    if not found:
        raise RuntimeError("no %s backup under %s" % (store, root))
    path = max(found, key=os.path.getmtime)
    with open(path) as f:
        return path[: -len(".manifest.json")], json.load(f)
