# -*- coding: utf-8 -*-
# Copyright (c) cclite.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The architecture of docs/architecture.md, held: imports point one way, every file says what it holds."""

from __future__ import annotations

import ast
import os
import typing as t

import pytest

from ansible_collections.cclite.backup.plugins.module_utils._core import _errors

PREFIX = "ansible_collections.cclite.backup.plugins.module_utils."
# What each part may import besides itself (docs/architecture.md draws the same arrows).
ALLOWED = {
    "_core": set(),
    "_engines": {"_core"},
    "_offsite": {"_core"},
    "_reporting": {"_core"},
}


def plugin_files() -> list[str]:
    base = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(_errors.__file__))))  # plugins/
    found = []
    for directory, _dirs, files in os.walk(base):
        found += [os.path.join(directory, f) for f in files if f.endswith(".py") and f != "__init__.py"]
    return sorted(found)


def part_of(path: str) -> tuple[str, str]:
    """(part, engine) of a module_utils file: ('_engines', 'redis'), ('_core', '')."""
    rel = path.split(os.sep + "module_utils" + os.sep, 1)[1].split(os.sep)
    return rel[0], rel[1] if rel[0] == "_engines" else ""


def imported(path: str) -> t.Iterator[str]:
    with open(path, encoding="utf-8") as handle:
        tree = ast.parse(handle.read())
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith(PREFIX):
            inner = node.module[len(PREFIX):].split(".")
            yield ".".join(inner if len(inner) > 1 else inner + [node.names[0].name])


MODULE_UTILS = [p for p in plugin_files() if os.sep + "module_utils" + os.sep in p]


@pytest.mark.parametrize("path", MODULE_UTILS, ids=lambda p: p.split("module_utils" + os.sep)[1])
def test_imports_point_one_way(path: str) -> None:
    part, engine = part_of(path)
    for target in imported(path):
        bits = target.split(".")
        if bits[0] == part:
            if part == "_engines":
                assert bits[1] == engine, "%s imports another engine (%s): engines share only the core" % (path, target)
            continue
        assert bits[0] in ALLOWED[part], "%s (part %s) imports %s: see docs/architecture.md" % (path, part, target)


def test_module_utils_are_in_their_parts() -> None:
    flat = [p for p in MODULE_UTILS if part_of(p)[0].endswith(".py")]
    assert not flat, "module_utils files outside a part folder: %s" % flat
    assert {part_of(p)[0] for p in MODULE_UTILS} == set(ALLOWED)


@pytest.mark.parametrize("path", plugin_files(), ids=lambda p: p.split("plugins" + os.sep)[1])
def test_every_file_says_what_it_holds(path: str) -> None:
    with open(path, encoding="utf-8") as handle:
        tree = ast.parse(handle.read())
    doc = ast.get_docstring(tree)
    if doc is None and os.sep + "modules" + os.sep in path:
        doc = next(
            (n.value.value for n in tree.body if isinstance(n, ast.Assign) and isinstance(n.value, ast.Constant)
             and any(getattr(tg, "id", "") == "DOCUMENTATION" for tg in n.targets)),
            None,
        )
    assert doc and doc.strip(), "%s has no opening sentence (a module docstring)" % path
