# -*- coding: utf-8 -*-
# Copyright (c) cclite.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""backup_local_encryption through the shipped playbooks (ansible-runner, as AWX runs them): the
role wiring from the one setting and the off-site key to the modules, on a database of its own."""

from __future__ import annotations

import glob
import json
import os
import typing as t

import pytest
import yaml

from .conftest import PG_PASSWORD, ROOT, Postgres, run_playbook

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

KEY = "runner-at-rest-key-" + "p4Vq9sLw2ZrT7yXc1mNb8KdG"
SECRET_ROW = "heron-cobalt-secret-row-55e1"
MAGIC = b"cclite.backup/aead-v1\n"


@pytest.fixture(scope="module")
def encdemo(postgres: Postgres) -> t.Iterator[Postgres]:
    postgres.psql("DROP DATABASE IF EXISTS encdemo", database="postgres")
    postgres.psql("CREATE DATABASE encdemo", database="postgres")
    postgres.psql("CREATE TABLE items (id integer PRIMARY KEY, body text NOT NULL);"
                  "INSERT INTO items SELECT g, md5(g::text) FROM generate_series(1, 3000) g;"
                  "INSERT INTO items VALUES (9001, '%s');" % SECRET_ROW, database="encdemo")
    yield postgres
    postgres.psql("DROP DATABASE IF EXISTS encdemo", database="postgres")


def test_backup_verify_restore_with_encryption_at_rest(encdemo: Postgres, tmp_path: t.Any) -> None:
    root = str(tmp_path / "backups")
    inventory = str(tmp_path / "hosts.yml")
    with open(inventory, "w", encoding="utf-8") as handle:
        yaml.safe_dump({"cclite_backup": {
            "hosts": {"localhost": {"ansible_connection": "local",
                                    "ansible_python_interpreter": os.path.join(ROOT, ".venv", "bin", "python")}},
            "vars": {
                "backup_root": root, "backup_metrics_dir": "", "backup_stores": ["postgresql"],
                "postgresql_backup_mode": "host", "postgresql_backup_login_host": "127.0.0.1",
                "postgresql_backup_login_port": encdemo.port, "postgresql_backup_login_password": PG_PASSWORD,
                "postgresql_backup_databases": ["encdemo"],
                "backup_local_encryption": True, "backup_s3_encryption_key": KEY,
            }}}, handle)

    job = run_playbook(inventory, "backup", {})
    assert (job.status, job.rc) == ("successful", 0), job.stdout[-3000:]
    [path] = glob.glob(os.path.join(root, "postgresql", "postgres_backup_*.sql.gz"))
    with open(path, "rb") as handle:
        data = handle.read()
    assert data.startswith(MAGIC) and SECRET_ROW.encode() not in data
    with open(path + ".manifest.json", encoding="utf-8") as handle:
        manifest = json.load(handle)
    assert manifest["artifact"]["encryption"]["algorithm"] == "cclite-aead-v1"
    assert KEY not in job.stdout and KEY not in json.dumps(job.results)

    job = run_playbook(inventory, "verify", {})  # verify_level full: every byte decrypted and checked
    assert (job.status, job.rc) == ("successful", 0), job.stdout[-3000:]
    keyless = run_playbook(inventory, "verify", {"backup_s3_encryption_key": ""})
    assert keyless.status == "failed" and "no key is configured: set backup_s3_encryption_key" in keyless.stdout, keyless.stdout[-3000:]

    encdemo.psql("DELETE FROM items WHERE id > 100; UPDATE items SET body = 'gone' WHERE id = 1", database="encdemo")
    job = run_playbook(inventory, "restore", {"restore_confirm": True, "postgresql_backup_restore_safety_backup": True})
    assert (job.status, job.rc) == ("successful", 0), job.stdout[-3000:]
    assert encdemo.psql("SELECT count(*) FROM items", database="encdemo") == "3001"
    assert encdemo.psql("SELECT body FROM items WHERE id = 9001", database="encdemo") == SECRET_ROW
    assert encdemo.psql("SELECT body FROM items WHERE id = 1", database="encdemo") == "c4ca4238a0b923820dcc509a6f75849b"
    [safety] = glob.glob(os.path.join(root, "postgresql", "safety", "postgres_safety_*.sql.gz"))
    with open(safety, "rb") as handle:
        assert handle.read().startswith(MAGIC)  # the replaced data, encrypted too
    assert KEY not in job.stdout
