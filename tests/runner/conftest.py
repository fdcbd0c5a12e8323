# -*- coding: utf-8 -*-
# Copyright (c) cclite.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Fixtures for running the shipped playbooks the way AWX does: through ansible-runner, with
extra vars only, against a real PostgreSQL started here, with a local HTTP server (127.0.0.1)
that captures what the webhook and the dead-man's switch receive, and a moto S3 server."""

from __future__ import annotations

import dataclasses
import http.server
import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
import typing as t

import pytest
import yaml

from tests import throwaway_postgres

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PG_PASSWORD = "Runner-Secret-9d2f7"
WEBHOOK_TOKEN = "T000-B000-hookTokenZ9"
PING_UUID = "5f0c2a1e-ping-uuid-4b7d"


@dataclasses.dataclass
class Request:
    method: str
    path: str
    body: bytes

    def json(self) -> t.Any:
        return json.loads(self.body)


class Capture:
    """Requests received; a path under /broken/ answers 500, anything else 200."""

    def __init__(self) -> None:
        self.requests: list[Request] = []
        capture = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                length = int(self.headers.get("Content-Length") or 0)
                capture.requests.append(Request("POST", self.path, self.rfile.read(length)))
                code = 500 if self.path.startswith("/broken/") else 200
                self.send_response(code)
                self.send_header("Content-Type", "text/plain")
                self.end_headers()
                self.wfile.write(b"ok" if code == 200 else b"server error")

            do_GET = do_POST

            def log_message(self, *args: t.Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = "http://127.0.0.1:%d" % self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def take(self) -> list[Request]:
        taken, self.requests = self.requests, []
        return taken

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="session")
def capture() -> t.Iterator[Capture]:
    server = Capture()
    yield server
    server.close()


@pytest.fixture(scope="session")
def s3_server() -> t.Iterator[str]:
    """A moto S3 server on 127.0.0.1 (its own process); yields its endpoint URL."""
    port = throwaway_postgres.free_port()
    proc = subprocess.Popen([os.path.join(ROOT, ".venv", "bin", "python"), "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield "http://127.0.0.1:%d" % port
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def s3_client(endpoint: str) -> t.Any:
    import boto3  # imported late: only the S3 tests need it

    return boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="testing",
                        aws_secret_access_key="testing-secret")


def make_bucket(endpoint: str, bucket: str) -> t.Any:
    """Create ``bucket`` (waiting for the server to listen); returns a client."""
    client = s3_client(endpoint)
    for _attempt in range(100):
        try:
            client.create_bucket(Bucket=bucket)
            break
        except Exception:  # pylint: disable=broad-exception-caught  # not listening yet
            time.sleep(0.1)
    return client


@dataclasses.dataclass
class Postgres:
    port: int
    data: str

    def psql(self, sql: str, database: str = "operator_demo") -> str:
        env = dict(os.environ, PGPASSWORD=PG_PASSWORD)
        out = subprocess.run(["psql", "-X", "-At", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "-d", database,
                              "-v", "ON_ERROR_STOP=1", "-c", sql], env=env, check=True, capture_output=True, text=True)
        return out.stdout.strip()


@pytest.fixture(scope="session")
def postgres() -> t.Iterator[Postgres]:
    if not throwaway_postgres.installed():
        pytest.skip("PostgreSQL 15 is not installed (apt-get install postgresql-15)")
    with throwaway_postgres.cluster(PG_PASSWORD, "cclite-runner-pg-") as (port, data):
        server = Postgres(port, data)
        server.psql("CREATE DATABASE operator_demo", database="postgres")
        server.psql(
            "CREATE TABLE users (id serial PRIMARY KEY, email text NOT NULL);"
            "INSERT INTO users (email) SELECT 'agent' || g || '@example.com' FROM generate_series(1, 3000) g;"
        )
        yield server


@dataclasses.dataclass
class Job:
    """What AWX looks at after a job: status, rc, stdout, events and the set_stats artifacts."""

    status: str
    rc: int
    stdout: str
    artifacts: dict[str, t.Any]
    results: list[dict[str, t.Any]] = dataclasses.field(default_factory=list)  # each task's result, in order

    def module_results(self, module: str, task: str = "") -> list[dict[str, t.Any]]:
        """The results of every item of the tasks that ran ``module`` (by its FQCN), or of the
        task named ``task`` (a role's module run through cclite.backup.backup_job)."""
        found = []
        for result in self.results:
            if result.get("task_action") == module or (task and result.get("task") == task):
                found.extend(result["res"].get("results") or [result["res"]])
        return found


def run_playbook(inventory: str, playbook: str, extravars: t.Mapping[str, t.Any], cmdline: str = "",
                 envvars: t.Mapping[str, str] | None = None) -> Job:
    """Run playbooks/<playbook>.yml through ansible-runner, as AWX does, with extra vars only."""
    import ansible_runner  # imported late: only these tests need it

    private = tempfile.mkdtemp(prefix="cclite-runner-job-")
    try:
        env = {
            "ANSIBLE_COLLECTIONS_PATH": os.path.join(ROOT, ".collections"),
            "PATH": os.path.join(ROOT, ".venv", "bin") + os.pathsep + os.environ.get("PATH", ""),
            "ANSIBLE_NOCOLOR": "1",
        }
        env.update(envvars or {})
        result = ansible_runner.run(
            private_data_dir=private,
            project_dir=ROOT,
            playbook="playbooks/%s.yml" % playbook,
            inventory=inventory,
            extravars=dict(extravars),
            envvars=env,
            quiet=True,
            timeout=600,
            **({"cmdline": cmdline} if cmdline else {}),
        )
        stdout = result.stdout.read()
        stats = [e for e in result.events if e.get("event") == "playbook_on_stats"]
        artifacts = stats[0]["event_data"].get("artifact_data", {}) if stats else {}
        results = [e["event_data"] for e in result.events if e.get("event") == "runner_on_ok"]
        return Job(result.status, result.rc, stdout, artifacts, results)
    finally:
        shutil.rmtree(private, ignore_errors=True)


@dataclasses.dataclass
class Site:
    root: str  # backup_root
    metrics: str  # backup_metrics_dir
    inventory: str
    postgres: Postgres

    def run(self, playbook: str, cmdline: str = "", **extravars: t.Any) -> Job:
        return run_playbook(self.inventory, playbook, extravars, cmdline)

    def path(self, *parts: str) -> str:
        return os.path.join(self.root, *parts)


@pytest.fixture(scope="session")
def site(postgres: Postgres, tmp_path_factory: pytest.TempPathFactory) -> Site:
    base = tmp_path_factory.mktemp("site")
    root, metrics = str(base / "backups"), str(base / "metrics")
    inventory = str(base / "hosts.yml")
    with open(inventory, "w", encoding="utf-8") as handle:
        yaml.safe_dump(
            {
                "cclite_backup": {
                    "hosts": {"localhost": {"ansible_connection": "local", "ansible_python_interpreter": os.path.join(ROOT, ".venv", "bin", "python")}},
                    "vars": {
                        "backup_root": root,
                        "backup_metrics_dir": metrics,
                        "backup_stores": ["postgresql"],
                        "postgresql_backup_mode": "host",
                        "postgresql_backup_login_host": "127.0.0.1",
                        "postgresql_backup_login_port": postgres.port,
                        "postgresql_backup_login_password": PG_PASSWORD,
                        "postgresql_backup_databases": ["operator_demo"],
                    },
                }
            },
            handle,
        )
    return Site(root, metrics, inventory, postgres)
