# -*- coding: utf-8 -*-
# Copyright (c) cclite.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Bad input to the shipped playbooks fails at once with a message naming the variable, and
changes nothing: the backups and run logs already there stay byte for byte (issue 18.3)."""

from __future__ import annotations

import hashlib
import os

import pytest

from .conftest import Site

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def snapshot(root: str) -> dict[str, str]:
    """Every file under root with its sha256."""
    files = {}
    for base, _dirs, names in os.walk(root):
        for name in names:
            path = os.path.join(base, name)
            with open(path, "rb") as handle:
                files[os.path.relpath(path, root)] = hashlib.sha256(handle.read()).hexdigest()
    return files


@pytest.fixture(scope="module")
def root(site: Site, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A catalog of its own with one good backup and its run log."""
    path = str(tmp_path_factory.mktemp("bad-input") / "backups")
    job = site.run("backup", backup_root=path, backup_metrics_dir="")
    assert (job.status, job.rc) == ("successful", 0), job.stdout[-3000:]
    return path


@pytest.mark.parametrize("playbook", ["backup", "verify"])
@pytest.mark.parametrize("variable, value", [
    ("backup_retention_days", -1),
    ("backup_retention_days", 0),
    ("backup_retention_days", "ten"),
    ("backup_retention_days", 1.5),
    ("postgresql_backup_retention_days", 0),
    ("report_retention_days", -7),
])
def test_retention_below_one_day_is_refused_before_anything_changes(site: Site, root: str, playbook, variable, value) -> None:
    before = snapshot(root)
    assert any(name.startswith("postgresql/") and name.endswith(".sql.gz") for name in before)
    assert any(name.startswith("logs/") for name in before)

    job = site.run(playbook, backup_root=root, backup_metrics_dir="", **{variable: value})

    assert job.status == "failed", job.stdout[-3000:]
    assert "%s is %s: give a whole number of days, at least 1" % (variable, value) in job.stdout, job.stdout[-3000:]
    assert snapshot(root) == before


@pytest.mark.parametrize("playbook", ["backup", "list"])
def test_a_bad_role_variable_fails_with_the_error_alone(site: Site, root: str, playbook) -> None:
    # Ansible's own check when the role starts prints the whole argument spec after the error (issue 18.8)
    before = {name: digest for name, digest in snapshot(root).items() if not name.startswith("logs/")}

    job = site.run(playbook, backup_root=root, backup_metrics_dir="", postgresql_backup_login_port="fivefourthreetwo")

    assert job.status == "failed", job.stdout[-3000:]
    assert "argument 'postgresql_backup_login_port' is of type str and we were unable to convert to int" in job.stdout
    assert "argument_spec_data" not in job.stdout and "postgresql_backup_ca_cert" not in job.stdout, job.stdout[-3000:]
    assert {name: digest for name, digest in snapshot(root).items() if not name.startswith("logs/")} == before


def test_the_role_refuses_a_restore_naming_its_confirmation_variable(site: Site, root: str) -> None:
    # the store role's own variable, not an internal one from restore.yml (issue 13)
    site.postgres.psql("INSERT INTO users (email) VALUES ('written-after-the-backup@example.com')")
    try:
        before = {name: digest for name, digest in snapshot(root).items() if not name.startswith("logs/")}

        job = site.run("../tests/runner/playbooks/role_restore", backup_root=root)

        assert (job.status, job.rc) == ("successful", 0), job.stdout[-3000:]  # recorded, as every store failure
        assert "postgresql | restore | FAILED | postgresql_backup_restore_confirm is not true" in job.stdout, job.stdout[-3000:]
        assert site.postgres.psql("SELECT count(*) FROM users WHERE email = 'written-after-the-backup@example.com'") == "1"
        assert {name: digest for name, digest in snapshot(root).items() if not name.startswith("logs/")} == before
    finally:
        site.postgres.psql("DELETE FROM users WHERE email = 'written-after-the-backup@example.com'")
