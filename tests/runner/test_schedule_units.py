# -*- coding: utf-8 -*-
# Copyright (c) cclite.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The systemd backend's units, rendered by the shipped schedule playbook and checked with
systemd's own tools. The test containers have no systemd as PID 1 (molecule/schedule writes the
units there without activating them), so the units are written to a scratch directory on this
machine and checked with `systemd-analyze verify` and `systemd-analyze calendar`."""

from __future__ import annotations

import configparser
import json
import os
import shutil
import subprocess

import pytest

from .conftest import PG_PASSWORD, ROOT, Site

pytestmark = pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")


def units(directory: str) -> dict[str, configparser.ConfigParser]:
    out = {}
    for name in sorted(os.listdir(directory)):
        parser = configparser.ConfigParser(interpolation=None, strict=False)
        parser.optionxform = str  # type: ignore[assignment,method-assign]
        parser.read(os.path.join(directory, name))
        out[name] = parser
    return out


def test_systemd_units_are_valid_and_fire_at_the_guide_times(site: Site, tmp_path) -> None:
    unit_dir, config = tmp_path / "units", tmp_path / "etc"
    command = tmp_path / "sbin" / "cclite-backup"
    collections = tmp_path / "collections"
    subprocess.run([os.path.join(ROOT, ".venv", "bin", "ansible-galaxy"), "collection", "build", "--output-path", str(tmp_path), ROOT],
                   check=True, capture_output=True)
    common = dict(schedule_backend="systemd", schedule_systemd_activate=False, schedule_systemd_dir=str(unit_dir),
                  schedule_systemd_randomized_delay=600, schedule_command=str(command), schedule_config_dir=str(config),
                  schedule_install_ansible=False, schedule_collections_path=str(collections),
                  schedule_collection_tarball=str(tmp_path / "cclite-backup-0.1.0.tar.gz"))
    os.makedirs(unit_dir)
    os.makedirs(command.parent)
    job = site.run("schedule", **common)
    assert (job.status, job.rc) == ("successful", 0), job.stdout[-3000:]

    found = units(str(unit_dir))
    jobs = ("backup", "verify", "verify-extended", "drill-monthly")
    assert sorted(found) == sorted("cclite-backup-%s.%s" % (j, k) for j in jobs for k in ("service", "timer"))
    calendars = {name: u["Timer"]["OnCalendar"] for name, u in found.items() if name.endswith(".timer")}
    assert calendars == {
        "cclite-backup-backup.timer": "*-*-* 02:00:00",
        "cclite-backup-verify.timer": "*-*-* 06:00:00",
        "cclite-backup-verify-extended.timer": "Sun *-*-* 03:00:00",
        "cclite-backup-drill-monthly.timer": "*-*-01 04:00:00",  # a random older set, the 1st of each month
    }
    for name, unit in found.items():
        if name.endswith(".timer"):
            assert unit["Timer"]["Persistent"] == "true" and unit["Timer"]["RandomizedDelaySec"] == "600"
            assert unit["Timer"]["Unit"] == name.replace(".timer", ".service")
            # systemd parses the expression, and the next elapse is the time the guide says
            out = subprocess.run(["systemd-analyze", "calendar", unit["Timer"]["OnCalendar"]], capture_output=True, text=True, check=True)
            assert "Next elapse:" in out.stdout
            hour = unit["Timer"]["OnCalendar"].split()[-1][:5]
            assert hour in out.stdout
        else:
            assert unit["Service"]["Type"] == "oneshot"
            assert unit["Service"]["ExecStart"] == "%s %s" % (command, name[len("cclite-backup-"):-len(".service")].replace("-", "_"))
    installed = collections / "ansible_collections" / "cclite" / "backup"
    assert (installed / "roles" / "schedule" / "tasks" / "install.yml").is_file() and (installed / "FILES.json").is_file()
    wrapper = command.read_text()
    assert "ANSIBLE_COLLECTIONS_PATH=%s" % collections in wrapper and "/usr/bin/ansible-playbook" in wrapper
    verify = subprocess.run(["systemd-analyze", "verify", *(str(unit_dir / n) for n in found)], capture_output=True, text=True, check=False)
    assert verify.returncode == 0, verify.stderr

    # no secret in clear in any file the schedule wrote: the settings are Ansible Vault files,
    # readable with the host's own root-only vault password, as the entry point reads them
    written = [p for d in (config, unit_dir, command.parent) for p in d.rglob("*") if p.is_file()]
    assert len(written) >= 10
    for path in written:
        assert PG_PASSWORD.encode() not in path.read_bytes(), "%s holds the password in clear" % path
    for name in ["inventory.yml"] + ["job_%s.yml" % j for j in ("backup", "verify", "verify_extended")]:
        assert (config / name).read_text().startswith("$ANSIBLE_VAULT;1.2;AES256;cclite-backup\n"), name
        assert (config / name).stat().st_mode & 0o777 == 0o600
    password = config / "vault-password"
    assert password.stat().st_mode & 0o777 == 0o400 and len(password.read_text().strip()) == 48
    assert "--vault-id cclite-backup@%s" % password in wrapper
    listed = subprocess.run([os.path.join(ROOT, ".venv", "bin", "ansible-inventory"), "-i", str(config / "inventory.yml"),
                             "--vault-id", "cclite-backup@%s" % password, "--list"], capture_output=True, text=True, check=True)
    assert json.loads(listed.stdout)["_meta"]["hostvars"]["localhost"]["postgresql_backup_login_password"] == PG_PASSWORD
    extended = subprocess.run([os.path.join(ROOT, ".venv", "bin", "ansible-vault"), "view", "--vault-id", "cclite-backup@%s" % password,
                               str(config / "job_verify_extended.yml")], capture_output=True, text=True, check=True)
    assert "verify_level: drill" in extended.stdout  # the weekly deep verification is a restore drill (issue 15)

    # install twice: nothing changes; uninstall: nothing of ours is left
    job = site.run("schedule", **common)
    assert (job.status, job.rc) == ("successful", 0)
    assert "changed=0" in job.stdout
    job = site.run("schedule", schedule_action="uninstall", **common)
    assert (job.status, job.rc) == ("successful", 0), job.stdout[-3000:]
    assert os.listdir(unit_dir) == [] and not command.exists() and not config.exists() and not installed.exists()
