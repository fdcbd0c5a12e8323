# -*- coding: utf-8 -*-
# Copyright (c) cclite.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Fixtures shared by the unit tests.

Nothing here mocks Python code: external programs are real processes (``sh``, ``printf``,
``gzip``, ...), and where a test needs a program to misbehave it puts a small shell script
of that name first on ``PATH``: the process boundary is the only seam.
"""

from __future__ import annotations

import os
import typing as t

import pytest

from ansible_collections.cclite.backup.plugins.module_utils._core import _errors


def collection_root() -> str:
    """The directory that holds ``ansible_collections``, as this test process imports it."""
    path = os.path.abspath(_errors.__file__)  # <root>/ansible_collections/cclite/backup/plugins/module_utils/_core/_errors.py
    for _level in range(7):
        path = os.path.dirname(path)
    return path


@pytest.fixture
def child_env() -> dict[str, str]:
    """Environment for a child Python that imports this collection the way the tests do."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (collection_root(), env.get("PYTHONPATH", "")) if p)
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


@pytest.fixture
def fake_program(tmp_path: t.Any, monkeypatch: pytest.MonkeyPatch) -> t.Callable[[str, str], str]:
    """Put a shell script with a program's name first on PATH; returns its path."""
    bindir = tmp_path / "fakebin"
    bindir.mkdir()
    monkeypatch.setenv("PATH", "%s%s%s" % (bindir, os.pathsep, os.environ.get("PATH", "")))

    def make(name: str, script: str) -> str:
        path = bindir / name
        path.write_text("#!/bin/sh\n" + script + "\n")
        path.chmod(0o755)
        return str(path)

    return make
