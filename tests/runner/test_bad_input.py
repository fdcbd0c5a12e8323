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


@pytest.mark.parametrize("playbook", ["backup", "verify", "list"])
@pytest.mark.parametrize("stores, error", [
    (["postgresql", "mysql"], "backup_stores has mysql, which cclite.backup does not know: use postgresql, redis, qdrant"),
    ("postgresql", "backup_stores must be a list of store names, got postgresql; on the command line use JSON"),
])
def test_a_bad_store_name_fails_with_its_fix_and_changes_nothing(site: Site, root: str, playbook, stores, error) -> None:
    before = {name: digest for name, digest in snapshot(root).items() if not name.startswith("logs/")}

    job = site.run(playbook, backup_root=root, backup_metrics_dir="", backup_stores=stores)

    assert job.status == "failed", job.stdout[-3000:]
    assert error in job.stdout, job.stdout[-3000:]
    assert {name: digest for name, digest in snapshot(root).items() if not name.startswith("logs/")} == before


@pytest.mark.parametrize("variable, value, error", [
    ("notify_timeout", "soon", "argument 'notify_timeout' is of type str and we were unable to convert to int"),
    ("report_size_trend_history", "a week", "argument 'report_size_trend_history' is of type str and we were unable to convert to int"),
])
def test_a_bad_report_or_notify_variable_fails_before_any_backup_and_the_run_is_logged(site: Site, root: str, variable, value, error) -> None:
    # checked with the store roles' variables (tasks/check_stores.yml): before, the backups were
    # made, then the role's own check failed with its whole spec and no run log nor notification
    before = {name: digest for name, digest in snapshot(root).items() if not name.startswith("logs/")}
    logs = {name for name in snapshot(root) if name.startswith("logs/") and name.endswith(".log")}

    job = site.run("backup", backup_root=root, backup_metrics_dir="", **{variable: value})

    assert job.status == "failed", job.stdout[-3000:]
    assert error in job.stdout and "argument_spec_data" not in job.stdout, job.stdout[-3000:]
    assert {name: digest for name, digest in snapshot(root).items() if not name.startswith("logs/")} == before
    new_logs = {name for name in snapshot(root) if name.startswith("logs/") and name.endswith(".log")} - logs
    assert len(new_logs) == 1, new_logs
    with open(os.path.join(root, new_logs.pop()), encoding="utf-8") as handle:
        text = handle.read()
    assert "FAILED" in text and error in text, text


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
