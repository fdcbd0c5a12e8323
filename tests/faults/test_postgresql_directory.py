# -*- coding: utf-8 -*-
# Copyright (c) cclite.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The directory format on a real PostgreSQL 15: backup, verify (full and deep), restore by
data digest, a corrupted, missing or added file caught, a killed dump leaving nothing published."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import time
import typing as t

import pytest

from tests.faults.conftest import PG_PASSWORD, Postgres
from tests.faults.harness import Module, kill_stage, reap_orphans, run

DIGEST = ("SELECT md5(string_agg(md5(t::text), '' ORDER BY id)) || ':' || count(*) FROM %s t")


def store(root: str) -> str:
    return os.path.join(root, "postgresql")


def args(postgres: Postgres, root: str, database: str = "dirapp", **extra: t.Any) -> dict[str, t.Any]:
    return postgres.args(root, database=database, format="directory", jobs=2, compression_level=1, **extra)


def plain(postgres: Postgres, root: str, database: str = "dirapp", **extra: t.Any) -> dict[str, t.Any]:
    """The arguments of the info and restore modules (restore: pg_restore -j 2)."""
    return postgres.args(root, database=database, **extra)


def digests(postgres: Postgres, database: str) -> dict[str, str]:
    return {table: postgres.psql(DIGEST % table, database=database) for table in ("items", "notes", '"odd name"')}


@pytest.fixture(scope="module")
def dirapp(postgres: Postgres) -> Postgres:
    """A database of three tables (one with a space in its name, one empty-ish)."""
    postgres.psql("DROP DATABASE IF EXISTS dirapp", database="postgres")
    postgres.psql("CREATE DATABASE dirapp", database="postgres")
    postgres.psql(
        "CREATE TABLE items (id integer PRIMARY KEY, body text NOT NULL);"
        "INSERT INTO items SELECT g, md5(g::text) || E'\\n' || md5((g * 7)::text) FROM generate_series(1, 30000) g;"
        "CREATE TABLE notes (id integer PRIMARY KEY, note text);"
        "INSERT INTO notes SELECT g, 'tab\tand \\ backslash ' || g FROM generate_series(1, 500) g;"
        'CREATE TABLE "odd name" (id integer PRIMARY KEY); INSERT INTO "odd name" VALUES (1), (2), (3);',
        database="dirapp",
    )
    return postgres


def only_backup(root: str) -> str:
    names = [n for n in os.listdir(store(root)) if n.startswith("postgres_backup_") and n.endswith(".dir")]
    assert len(names) == 1, os.listdir(store(root))
    return os.path.join(store(root), names[0])


def test_backup_verify_restore_by_digest(dirapp: Postgres, tmp_path: t.Any) -> None:
    root = str(tmp_path)
    made = run("postgresql_backup", args(dirapp, root))
    assert not made.failed, made.text
    path = only_backup(root)
    assert made.data["artifact"]["format"] == "directory" and made.data["artifact"]["path"] == path
    assert os.readlink(os.path.join(store(root), "latest.dir")) == os.path.basename(path)
    # the manifest lists every file with its sha256, and its row counts come from the data files
    manifest = made.data["source"]
    assert manifest["tables"] == {"public.items": 30000, "public.notes": 500, "public.odd name": 3}, manifest
    with open(path + ".manifest.json", encoding="utf-8") as handle:
        listed = {f["name"] for f in json.load(handle)["artifact"]["files"]}
    assert listed == set(os.listdir(path)) and "toc.dat" in listed
    assert oct(os.stat(path).st_mode & 0o777) == "0o700"
    assert all(os.stat(os.path.join(path, n)).st_mode & 0o077 == 0 for n in listed)

    checked = run("postgresql_backup_info", plain(dirapp, root, verify="deep", min_size_bytes=100))
    assert not checked.failed and checked.data["healthy"], checked.text
    report = checked.data["backups"][0]["verification"]
    assert report["checks"]["sha256"] == "ok" and report["checks"]["content"] == "ok" and report["checks"]["deep"] == "ok", report

    before = digests(dirapp, "dirapp")
    dirapp.psql("DELETE FROM items WHERE id % 2 = 0; UPDATE notes SET note = 'changed'; DROP TABLE \"odd name\";", database="dirapp")
    assert dirapp.psql("SELECT count(*) FROM items", database="dirapp") == "15000"
    restored = run("postgresql_restore", dict(plain(dirapp, root, jobs=2), confirm=True, name="latest", safety_backup=False,
                                              keep_previous=False))
    assert not restored.failed, restored.text
    assert digests(dirapp, "dirapp") == before
    assert restored.data["tables"]["public.items"] == 30000


@pytest.mark.parametrize("damage", ["flip", "truncate", "missing", "extra"])
def test_a_damaged_file_is_caught(dirapp: Postgres, tmp_path: t.Any, damage: str) -> None:
    root = str(tmp_path)
    made = run("postgresql_backup", args(dirapp, root))
    assert not made.failed, made.text
    path = only_backup(root)
    data = sorted((os.path.getsize(os.path.join(path, n)), n) for n in os.listdir(path) if n.endswith(".dat.gz"))
    victim = os.path.join(path, data[-1][1])  # the biggest table's data
    if damage == "flip":
        with open(victim, "r+b") as handle:
            handle.seek(os.path.getsize(victim) // 2)
            byte = handle.read(1)
            handle.seek(-1, os.SEEK_CUR)
            handle.write(bytes([byte[0] ^ 0xFF]))
    elif damage == "truncate":
        with open(victim, "r+b") as handle:
            handle.truncate(os.path.getsize(victim) - 100)
    elif damage == "missing":
        os.unlink(victim)
    else:
        with gzip.open(os.path.join(path, "9999.dat.gz"), "wb") as handle:
            handle.write(b"1\n\\.\n\n\n")
    checked = run("postgresql_backup_info", plain(dirapp, root, verify="full", min_size_bytes=100))
    assert not checked.failed, checked.text
    assert not checked.data["healthy"], checked.data
    report = checked.data["backups"][0]["verification"]
    assert report["state"] == "bad", report
    assert any(os.path.basename(victim) in p or "9999.dat.gz" in p for p in report["problems"]), report
    # and a restore refuses it (found while its files load into the staging database): the database untouched
    before = digests(dirapp, "dirapp")
    refused = run("postgresql_restore", dict(plain(dirapp, root, jobs=2), confirm=True, name=os.path.basename(path)))
    assert refused.failed and "nothing was changed" in refused.data["msg"], refused.text
    assert digests(dirapp, "dirapp") == before


def test_a_killed_dump_publishes_nothing(dirapp: Postgres, tmp_path: t.Any) -> None:
    root = str(tmp_path)
    first = run("postgresql_backup", args(dirapp, root, database="dirapp"))
    assert not first.failed, first.text
    published = sorted(os.listdir(store(root)))
    for stage in ("pg_dump", None):
        module = Module("postgresql_backup", args(dirapp, root, database="dirapp"))
        how = kill_stage(module, stage, 0.0)  # dirapp's dump lasts long enough to be seen at once; 'app' could end first
        if stage is None:
            reap_orphans(module)
        result = module.wait()
        assert how == "killed", how
        assert result.failed, result.text
        time.sleep(0.2)
        now = sorted(n for n in os.listdir(store(root)) if not n.endswith(".partial"))
        assert [n for n in now if n not in (".lock", ".catalog.jsonl")] == [n for n in published if n not in (".lock", ".catalog.jsonl")]
    latest = os.readlink(os.path.join(store(root), "latest.dir"))
    assert latest == os.path.basename(only_backup(root))
    after = run("postgresql_backup", args(dirapp, root, database="dirapp"))
    assert not after.failed, after.text
    assert all(p["name"].endswith(".partial") for p in after.data["removed_partials"])
    assert not [n for n in os.listdir(store(root)) if n.endswith(".partial")]


def test_bad_settings_are_refused_before_anything_runs(dirapp: Postgres, tmp_path: t.Any) -> None:
    root = str(tmp_path)
    zstd = run("postgresql_backup", args(dirapp, root, compression="zstd"))
    assert zstd.failed and "compression gzip" in zstd.data["msg"], zstd.text
    docker = run("postgresql_backup", dict(args(dirapp, root), mode="docker", container="nonexistent"))
    assert docker.failed and "mode host" in docker.data["msg"], docker.text
    assert not os.path.exists(store(root)) or not [n for n in os.listdir(store(root)) if n.endswith(".dir")]


def test_a_directory_dump_made_by_hand_is_adopted(dirapp: Postgres, tmp_path: t.Any) -> None:
    """pg_dump -Fd by hand, named like a backup: adopted (restored into a scratch database,
    counted), then verified against the manifest it got, and restored."""
    root = str(tmp_path)
    os.makedirs(store(root), mode=0o700)
    path = os.path.join(store(root), "postgres_backup_20250101_020000.dir")
    env = dict(os.environ, PGPASSWORD=PG_PASSWORD)
    subprocess.run(["pg_dump", "-h", "127.0.0.1", "-p", str(dirapp.port), "-U", "postgres", "-Fd", "-j", "2", "-f", path, "dirapp"],
                   env=env, check=True, capture_output=True)
    adopted = run("postgresql_backup_adopt", plain(dirapp, root))
    assert not adopted.failed and [a["name"] for a in adopted.data["adopted"]] == [os.path.basename(path)], adopted.text
    with open(path + ".manifest.json", encoding="utf-8") as handle:
        manifest = json.load(handle)
    assert manifest["format"] == "directory" and manifest["source"]["tables"]["public.items"] == 30000
    assert {f["name"] for f in manifest["artifact"]["files"]} == set(os.listdir(path))
    checked = run("postgresql_backup_info", plain(dirapp, root, verify="full", min_size_bytes=100, max_age_hours=1e6))
    assert checked.data["backups"][0]["verification"]["state"] == "good", checked.text
