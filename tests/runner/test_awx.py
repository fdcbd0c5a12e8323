# -*- coding: utf-8 -*-
# Copyright (c) cclite.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The AWX pieces that can be checked without an AWX server: the execution environment
definition makes a build context with ansible-builder, and the configuration playbook parses."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tarfile

import yaml

from .conftest import ROOT

BIN = os.path.join(ROOT, ".venv", "bin")
ENV = dict(os.environ, PATH=BIN + os.pathsep + os.environ.get("PATH", ""), ANSIBLE_COLLECTIONS_PATH=os.path.join(ROOT, ".collections"))


def test_execution_environment_makes_a_build_context(tmp_path):
    shutil.copy(os.path.join(ROOT, "execution-environment.yml"), tmp_path)
    subprocess.run([os.path.join(BIN, "ansible-galaxy"), "collection", "build", "--output-path", str(tmp_path / "dist"), ROOT],
                   check=True, capture_output=True, env=ENV)
    out = subprocess.run([os.path.join(BIN, "ansible-builder"), "create", "-f", "execution-environment.yml", "-c", "context"],
                         cwd=tmp_path, capture_output=True, text=True, env=ENV, check=False)
    assert out.returncode == 0, out.stdout + out.stderr
    build = tmp_path / "context" / "_build"
    collections = yaml.safe_load((build / "requirements.yml").read_text())["collections"]
    assert {"name": "/build/dist/cclite-backup-0.1.0.tar.gz", "type": "file"} in collections
    assert (build / "dist" / "cclite-backup-0.1.0.tar.gz").is_file()
    # the tarball brings what the shipped content uses (awx.awx for awx_configure.yml, community.docker for dr.yml),
    # no test-only collection
    with tarfile.open(build / "dist" / "cclite-backup-0.1.0.tar.gz") as tar:
        manifest = json.load(tar.extractfile("MANIFEST.json"))
    assert manifest["collection_info"]["dependencies"] == {"awx.awx": ">=24.0.0", "community.docker": ">=4.0.0"}
    dockerfile = (tmp_path / "context" / "Dockerfile").read_text()
    assert "ansible-core==2.19.14" in dockerfile and "ansible-runner==2.4.3" in dockerfile
    assert "openssh-clients" in (build / "bindep.txt").read_text()


def test_awx_configure_parses_and_names_the_guide_schedule():
    out = subprocess.run([os.path.join(BIN, "ansible-playbook"), "--syntax-check", os.path.join(ROOT, "playbooks", "awx_configure.yml")],
                         capture_output=True, text=True, env=ENV, check=False)
    assert out.returncode == 0, out.stdout + out.stderr
    play = yaml.safe_load(open(os.path.join(ROOT, "playbooks", "awx_configure.yml"), encoding="utf-8"))[0]
    schedules = {s["template"]: (s["hour"], s["minute"], s["rrule"]) for s in play["vars"]["awx_schedules"]}
    assert schedules == {"backup": (2, 0, "FREQ=DAILY;INTERVAL=1"), "verify": (6, 0, "FREQ=DAILY;INTERVAL=1"),
                         "verify extended": (3, 0, "FREQ=WEEKLY;INTERVAL=1;BYDAY=SU")}
    survey = [t for t in play["tasks"] if "survey_spec" in t.get("awx.awx.job_template", {})][0]["awx.awx.job_template"]
    variables = [q["variable"] for q in survey["survey_spec"]["spec"]]
    assert variables == ["restore_confirm", "restore_postgresql_file", "restore_redis_file", "restore_qdrant_file"]
    assert survey["playbook"] == "playbooks/restore.yml"
