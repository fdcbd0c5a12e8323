# -*- coding: utf-8 -*-
# Copyright (c) cclite.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""A directory-format PostgreSQL backup through S3 with the shipped playbooks: backup.yml dumps
a real database with ``pg_dump -Fd -j2`` and copies it to a moto S3 (encrypted) as one tar
object; the local backups are deleted, the data changed, and ``restore.yml -e
restore_source=s3`` fetches the directory back and restores it; the rows are compared."""

from __future__ import annotations

import io
import json
import os
import shutil
import tarfile

import pytest
import yaml

from .conftest import PG_PASSWORD, ROOT, Postgres, make_bucket, run_playbook

BUCKET = "cclite-dirs"
DATABASE = "dir_demo"
KEY = "Dir-S3-Key-0123456789-abcdefghijklmnopq"


@pytest.fixture
def database(postgres: Postgres) -> Postgres:
    postgres.psql("DROP DATABASE IF EXISTS %s" % DATABASE, database="postgres")
    postgres.psql("CREATE DATABASE %s" % DATABASE, database="postgres")
    postgres.psql(
        "CREATE TABLE items (id int PRIMARY KEY, label text NOT NULL, qty int NOT NULL);"
        "INSERT INTO items SELECT g, 'item-' || g || repeat('x', g % 50), g % 97 FROM generate_series(1, 40000) g;"
        "CREATE TABLE notes (id int PRIMARY KEY, body text NOT NULL);"
        "INSERT INTO notes VALUES (1, 'first note'), (2, E'tab\\there, quote '' and newline\\nend'), (3, 'third');",
        database=DATABASE,
    )
    return postgres


def test_directory_backup_restores_from_s3(database: Postgres, s3_server: str, tmp_path) -> None:
    client = make_bucket(s3_server, BUCKET)
    root = str(tmp_path / "backups")
    inventory = tmp_path / "hosts.yml"
    inventory.write_text(yaml.safe_dump({"cclite_backup": {"hosts": {"localhost": {
        "ansible_connection": "local", "ansible_python_interpreter": os.path.join(ROOT, ".venv", "bin", "python"),
        "backup_root": root, "backup_metrics_dir": str(tmp_path / "metrics"), "backup_stores": ["postgresql"],
        "postgresql_backup_mode": "host", "postgresql_backup_login_host": "127.0.0.1",
        "postgresql_backup_login_port": database.port, "postgresql_backup_login_password": PG_PASSWORD,
        "postgresql_backup_databases": [DATABASE], "postgresql_backup_format": "directory", "postgresql_backup_jobs": 2,
        "backup_s3_bucket": BUCKET, "backup_s3_endpoint_url": s3_server, "backup_s3_region": "us-east-1",
        "backup_s3_addressing_style": "path", "backup_s3_access_key": "testing", "backup_s3_secret_key": "testing-secret",
        "backup_s3_encryption_key": KEY,
    }}}}))
    want_items = database.psql("SELECT count(*), sum(qty), md5(string_agg(label, ',' ORDER BY id)) FROM items", DATABASE)
    want_note = database.psql("SELECT body FROM notes WHERE id = 2", DATABASE)

    job = run_playbook(str(inventory), "backup", {})
    assert (job.status, job.rc) == ("successful", 0), job.stdout[-3000:]
    store = os.path.join(root, "postgresql")
    [name] = [n for n in os.listdir(store) if n.startswith("postgres_backup") and n.endswith(".dir")]
    files = json.load(open(os.path.join(store, name + ".manifest.json"), encoding="utf-8"))["artifact"]["files"]
    assert "toc.dat" in {f["name"] for f in files} and len(files) >= 3

    # on S3: one object (encrypted tar) and its manifest, nothing else
    prefix = "cc-lite/backups/postgresql/"
    keys = sorted(o["Key"] for o in client.list_objects_v2(Bucket=BUCKET)["Contents"])
    assert keys == [prefix + name, prefix + name + ".manifest.json"]
    remote = json.loads(client.get_object(Bucket=BUCKET, Key=prefix + name + ".manifest.json")["Body"].read())
    assert remote["archive"]["format"] == "tar" and remote["archive"]["of"] == "directory"
    assert remote["encryption"]["key_id"] and remote["artifact"]["files"] == files
    stored = client.get_object(Bucket=BUCKET, Key=prefix + name)["Body"].read()
    assert len(stored) == remote["offsite"]["size"] > remote["archive"]["size"] and b"toc.dat" not in stored
    with pytest.raises(tarfile.ReadError):  # encrypted: not a readable tar
        tarfile.open(fileobj=io.BytesIO(stored)).getmembers()

    # the host loses its backups; the data changes
    shutil.rmtree(store)
    database.psql("DELETE FROM items WHERE id > 100; UPDATE notes SET body = 'overwritten' WHERE id = 2;", DATABASE)
    assert database.psql("SELECT count(*) FROM items", DATABASE) == "100"

    job = run_playbook(str(inventory), "restore", {"restore_source": "s3", "restore_confirm": True})
    assert (job.status, job.rc) == ("successful", 0), job.stdout[-3000:]
    assert database.psql("SELECT count(*), sum(qty), md5(string_agg(label, ',' ORDER BY id)) FROM items", DATABASE) == want_items
    assert want_items.startswith("40000|")
    assert database.psql("SELECT body FROM notes WHERE id = 2", DATABASE) == want_note == "tab\there, quote ' and newline\nend"
    # the fetched directory is back in the catalog (restore.yml names the backup set's member), file for file
    [fetch] = job.module_results("cclite.backup.s3_backup_fetch")
    assert [(b["name"], b["downloaded"]) for b in fetch["backups"]] == [(name, True)]
    fetched = json.load(open(os.path.join(store, name + ".manifest.json"), encoding="utf-8"))
    assert fetched["artifact"]["files"] == files and fetched["fetched_from"]["archive"]["sha256"] == remote["archive"]["sha256"]
    assert sorted(os.listdir(os.path.join(store, name))) == sorted(f["name"] for f in files)
    assert not [n for n in os.listdir(store) if n.endswith(".partial")]
