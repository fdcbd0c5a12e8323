# -*- coding: utf-8 -*-
# Copyright (c) cclite.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The roles' argument specs say each option once (shared ones through a YAML anchor, never
copied), and every entry point still gets a complete, typed spec after the merge."""

from __future__ import annotations

import collections
import glob
import os

import pytest
import yaml

ROLES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "roles")
SPECS = sorted(glob.glob(os.path.join(ROLES, "*", "meta", "argument_specs.yml")))


def declared_options(path: str) -> collections.Counter:
    """How many times each option is declared in the file (a merge or an alias declares nothing new)."""
    with open(path, encoding="utf-8") as handle:
        root = yaml.compose(handle)
    seen: collections.Counter = collections.Counter()
    merged: set[int] = set()  # an alias is the very node of its anchor: read each once

    def options_of(node: yaml.Node) -> None:
        if isinstance(node, yaml.MappingNode) and id(node) not in merged:
            merged.add(id(node))
            for key, value in node.value:
                if key.value == "<<" and isinstance(value, yaml.MappingNode):
                    options_of(value)  # an anchor's definition
                elif key.value != "<<" and id(value) not in merged:
                    merged.add(id(value))  # ``name: *anchor`` repeats no declaration
                    seen[key.value] += 1

    for _name, entry in root.value[0][1].value:
        for key, value in entry.value:
            if key.value == "options":
                options_of(value)
    return seen


def test_every_role_spec_is_found():
    assert {os.path.basename(os.path.dirname(os.path.dirname(p))) for p in SPECS} >= {
        "postgresql_backup", "redis_backup", "qdrant_backup", "offsite", "report"}


@pytest.mark.parametrize("path", SPECS, ids=lambda p: os.path.basename(os.path.dirname(os.path.dirname(p))))
def test_each_option_is_declared_once(path):
    twice = sorted(name for name, count in declared_options(path).items() if count > 1)
    assert not twice, "declared more than once (anchor them instead): %s" % ", ".join(twice)


@pytest.mark.parametrize("path", SPECS, ids=lambda p: os.path.basename(os.path.dirname(os.path.dirname(p))))
def test_every_entry_point_has_typed_options_after_the_merge(path):
    role = os.path.basename(os.path.dirname(os.path.dirname(path)))
    with open(path, encoding="utf-8") as handle:
        specs = yaml.safe_load(handle)["argument_specs"]
    for entry, spec in specs.items():
        assert spec["short_description"] and spec["options"], (role, entry)
        for name, option in spec["options"].items():
            assert name.startswith(role + "_"), (role, entry, name)
            assert option.get("type") and option.get("description"), (role, entry, name)
