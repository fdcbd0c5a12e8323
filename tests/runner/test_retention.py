# -*- coding: utf-8 -*-
# Copyright (c) cclite.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Retention by generations through the shipped backup playbook: `--check` lists what would go
and deletes nothing; the real run deletes exactly what the rules leave."""

from __future__ import annotations

import datetime
import gzip
import hashlib
import os

import pytest

from .conftest import Site

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

DUMP = b"-- PostgreSQL database dump\n" + b"-- padding\n" * 400 + b"-- PostgreSQL database dump complete\n"


def planted(root: str, days: int) -> str:
    """A backup the guide's scripts made ``days`` ago (no manifest)."""
    stamp = datetime.datetime.now() - datetime.timedelta(days=days)
    path = os.path.join(root, "postgresql", "postgres_backup_%s.sql.gz" % stamp.strftime("%Y%m%d_%H%M%S"))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as handle:
        handle.write(gzip.compress(DUMP + b"-- made %d days ago\n" % days))
    return path


def state(directory: str) -> dict[str, str]:
    out = {}
    for name in sorted(os.listdir(directory)):
        path = os.path.join(directory, name)
        if os.path.isfile(path) and not os.path.islink(path):
            with open(path, "rb") as handle:
                out[name] = hashlib.sha256(handle.read()).hexdigest()
    return out


def test_check_mode_lists_what_generations_would_delete_and_the_run_deletes_it(site: Site, tmp_path) -> None:
    root = str(tmp_path / "backups")
    ten, forty, forty_one, old = (planted(root, days) for days in (10, 40, 41, 75))
    policy = {"backup_root": root, "backup_retention_days": 7, "backup_retention_keep": {"daily": 2}}
    before = state(os.path.join(root, "postgresql"))

    dry = site.run("backup", cmdline="--check", **policy)
    assert (dry.status, dry.rc) == ("successful", 0), dry.stdout[-3000:]
    [predicted] = dry.module_results("cclite.backup.postgresql_backup", task="Back up each database")
    retention = predicted["retention"]
    assert retention["deleted"] == [forty_one, old]
    assert retention["protected"] == ten
    assert sorted(retention["generations"]) == sorted(os.path.basename(p) for p in (ten, forty))
    assert state(os.path.join(root, "postgresql")) == before  # nothing deleted, nothing written

    real = site.run("backup", **policy)
    assert (real.status, real.rc) == ("successful", 0), real.stdout[-3000:]
    [made] = real.module_results("cclite.backup.postgresql_backup", task="Back up each database")
    # the new backup is today's generation, ten days ago the second: forty days ago goes too
    assert made["retention"]["deleted"] == [forty, forty_one, old]
    left = sorted(n for n in os.listdir(os.path.join(root, "postgresql")) if n.startswith("postgres_backup_") and n.endswith(".sql.gz"))
    assert left == sorted([os.path.basename(made["artifact"]["path"]), os.path.basename(ten)])
