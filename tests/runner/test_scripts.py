# -*- coding: utf-8 -*-
# Copyright (c) cclite.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The guide's commands in scripts/, run as its users run them (environment variables, flags,
the prompt, exit codes) against the real PostgreSQL of these tests: back up, verify, list,
refuse at the prompt, restore, and catch a corrupted backup."""

from __future__ import annotations

import glob
import json
import os
import subprocess
import typing as t

import pytest

from .conftest import PG_PASSWORD, ROOT, Site

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def script(site: Site, backups: str, name: str, *args: str, answer: str | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, CCLITE_INVENTORY=site.inventory, BACKUP_DIR=backups, RETENTION_DAYS="30", MAX_AGE_HOURS="25",
               ANSIBLE_NOCOLOR="1", ANSIBLE_COLLECTIONS_PATH=os.path.join(ROOT, ".collections"))
    done = subprocess.run([os.path.join(ROOT, "scripts", name), *args], env=env, cwd=ROOT, capture_output=True, text=True,
                          input=answer if answer is not None else "", timeout=600, check=False)
    assert PG_PASSWORD not in done.stdout + done.stderr
    return done


def test_the_guides_commands_back_up_verify_list_and_restore(site: Site, tmp_path: t.Any) -> None:
    backups = str(tmp_path / "backups")
    rows = site.postgres.psql("SELECT count(*) FROM users")

    made = script(site, backups, "backup-production.sh")
    assert made.returncode == 0, made.stdout[-3000:]
    [dump] = glob.glob(os.path.join(backups, "postgresql", "postgres_backup_*.sql.gz"))
    with open(dump + ".manifest.json", encoding="utf-8") as handle:
        assert json.load(handle)["source"]["tables"] == {"public.users": int(rows)}
    assert os.readlink(os.path.join(backups, "postgresql", "latest.sql.gz")) == os.path.basename(dump)

    healthy = script(site, backups, "verify-backups.sh")
    assert healthy.returncode == 0, healthy.stdout[-3000:]
    assert healthy.stdout.rstrip().endswith("All backups are healthy!")

    listed = script(site, backups, "restore-db.sh", "--list")
    assert listed.returncode == 0 and os.path.basename(dump) in listed.stdout, listed.stdout[-3000:]

    # the safety prompt: anything but "yes" cancels, and nothing is touched
    site.postgres.psql("DELETE FROM users WHERE id > 10")
    cancelled = script(site, backups, "restore-db.sh", "--postgres", os.path.basename(dump), answer="no\n")
    assert cancelled.returncode == 1 and "this replaces the current data of: postgresql" in cancelled.stdout
    assert cancelled.stdout.rstrip().endswith("Restore cancelled.")  # (bash shows read's prompt on a terminal only)
    assert site.postgres.psql("SELECT count(*) FROM users") == "10"

    restored = script(site, backups, "restore-db.sh", "--postgres", os.path.basename(dump), answer="yes\n")
    assert restored.returncode == 0, restored.stdout[-3000:]
    assert site.postgres.psql("SELECT count(*) FROM users") == rows

    # a corrupted backup: verify lists the problem and exits 1
    with open(dump, "r+b") as handle:
        handle.truncate(os.path.getsize(dump) // 2)
    broken = script(site, backups, "verify-backups.sh")
    assert broken.returncode == 1 and "All backups are healthy!" not in broken.stdout
    assert os.path.basename(dump) in broken.stdout, broken.stdout[-3000:]


@pytest.mark.parametrize("name, args", [
    ("restore-db.sh", ["--bogus"]), ("restore-db.sh", []), ("restore-db.sh", ["--postgres"]), ("backup-cron.sh", ["bogus"]),
])
def test_bad_usage_exits_2_with_the_usage(site: Site, tmp_path: t.Any, name: str, args: list[str]) -> None:
    done = script(site, str(tmp_path), name, *args)
    assert done.returncode == 2
    assert "Usage: %s" % name in done.stdout + done.stderr
    assert not os.path.exists(str(tmp_path / "postgresql"))
