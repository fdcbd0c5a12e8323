# -*- coding: utf-8 -*-
# Copyright (c) cclite.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Moving from the guide's scripts: a catalog the scripts made (``pg_dump | gzip`` and
``ln -sf`` latest, no manifests) goes through the shipped adopt, verify and restore playbooks
as AWX runs them. Ordered: each test builds on the one before it."""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import subprocess

import pytest

from .conftest import PG_PASSWORD, Site

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

STAMPS = ("20251224_020000", "20251225_020000")


def sha256(path: str) -> str:
    with open(path, "rb") as handle:
        return hashlib.sha256(handle.read()).hexdigest()


def scripts_backup(site: Site, root: str, stamp: str) -> str:
    """What backup-production.sh does: pg_dump | gzip into the guide's name, then latest."""
    directory = os.path.join(root, "postgresql")
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, "postgres_backup_%s.sql.gz" % stamp)
    subprocess.run(
        ["bash", "-o", "pipefail", "-c",
         "pg_dump -h 127.0.0.1 -p %d -U postgres operator_demo | gzip > %s && ln -sf %s %s/latest.sql.gz"
         % (site.postgres.port, path, os.path.basename(path), directory)],
        env=dict(os.environ, PGPASSWORD=PG_PASSWORD), check=True,
    )
    return path


@pytest.fixture(scope="module")
def legacy(site: Site, tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = str(tmp_path_factory.mktemp("scripts") / "backups")
    older = scripts_backup(site, root, STAMPS[0])
    site.postgres.psql("INSERT INTO users (email) SELECT 'late' || g || '@example.com' FROM generate_series(1, 7) g")
    newer = scripts_backup(site, root, STAMPS[1])
    rows = int(site.postgres.psql("SELECT count(*) FROM users"))
    return {"root": root, "older": older, "newer": newer, "rows": rows,
            "sha256": {p: sha256(p) for p in (older, newer)}, "mtime": {p: os.stat(p).st_mtime_ns for p in (older, newer)}}


def test_adopt_gives_the_scripts_backups_manifests(site: Site, legacy: dict) -> None:
    job = site.run("adopt", backup_root=legacy["root"], backup_max_age_hours=10 ** 6)
    assert (job.status, job.rc) == ("successful", 0), job.stdout[-3000:]
    for path, rows in ((legacy["older"], legacy["rows"] - 7), (legacy["newer"], legacy["rows"])):
        with open(path + ".manifest.json", encoding="utf-8") as handle:
            manifest = json.load(handle)
        assert manifest["kind"] == "adopted"
        assert manifest["artifact"]["sha256"] == legacy["sha256"][path] == sha256(path)
        assert manifest["source"]["tables"] == {"public.users": rows}
        assert manifest["versions"]["server"].startswith("15.")
        assert os.stat(path).st_mtime_ns == legacy["mtime"][path]  # the file itself is untouched
    assert os.readlink(os.path.join(legacy["root"], "postgresql", "latest.sql.gz")) == os.path.basename(legacy["newer"])


def test_adopt_again_changes_nothing_and_verify_is_healthy(site: Site, legacy: dict) -> None:
    before = {p: os.stat(p + ".manifest.json").st_mtime_ns for p in (legacy["older"], legacy["newer"])}
    job = site.run("adopt", backup_root=legacy["root"])
    assert (job.status, job.rc) == ("successful", 0), job.stdout[-3000:]
    assert {p: os.stat(p + ".manifest.json").st_mtime_ns for p in before} == before
    job = site.run("verify", backup_root=legacy["root"], backup_max_age_hours=10 ** 6, postgresql_backup_verify_level="deep")
    assert (job.status, job.rc) == ("successful", 0), job.stdout[-3000:]
    assert "All backups are healthy!" in job.stdout


def test_a_truncated_scripts_backup_is_not_adopted(site: Site, legacy: dict) -> None:
    stamp = (datetime.datetime(2025, 12, 23, 2, 0)).strftime("%Y%m%d_%H%M%S")
    cut = os.path.join(legacy["root"], "postgresql", "postgres_backup_%s.sql.gz" % stamp)
    with open(legacy["older"], "rb") as src, open(cut, "wb") as dst:
        data = src.read()
        dst.write(data[: len(data) // 2])
    job = site.run("adopt", backup_root=legacy["root"])
    assert job.status == "failed" and "gzip stream" in job.stdout
    assert os.path.getsize(cut) == len(data) // 2 and not os.path.exists(cut + ".manifest.json")
    os.unlink(cut)


def test_restore_from_an_adopted_backup(site: Site, legacy: dict) -> None:
    site.postgres.psql("DELETE FROM users WHERE id > 5")
    job = site.run("restore", backup_root=legacy["root"], restore_confirm=True,
                   restore_postgresql_file=os.path.basename(legacy["older"]))
    assert (job.status, job.rc) == ("successful", 0), job.stdout[-3000:]
    assert int(site.postgres.psql("SELECT count(*) FROM users")) == legacy["rows"] - 7
    assert site.postgres.psql("SELECT count(*) FROM users WHERE email LIKE 'late%'") == "0"
