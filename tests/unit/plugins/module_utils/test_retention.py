# -*- coding: utf-8 -*-
# Copyright (c) cclite.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Retention by generations: which backups the daily/weekly/monthly rules keep, on a real store
directory, with the newest good backup always kept and a dry run that lists what would go."""

from __future__ import annotations

import datetime
import os

import pytest

from ansible_collections.cclite.backup.plugins.module_utils._core import _retention
from ansible_collections.cclite.backup.plugins.module_utils._core._catalog import POSTGRESQL, Catalog
from ansible_collections.cclite.backup.plugins.module_utils._core._errors import ConfigError
from ansible_collections.cclite.backup.plugins.module_utils._core._retention import Keep

NOW = datetime.datetime(2025, 6, 15, 12, 0, 0).astimezone()  # a Sunday
# newest first; two on 5 June; the ISO week of each in the comment
WHEN = [
    datetime.datetime(2025, 6, 14, 2, 0),   # 0 W24, inside the 7 days
    datetime.datetime(2025, 6, 5, 14, 0),   # 1 W23
    datetime.datetime(2025, 6, 5, 2, 0),    # 2 W23, same day as 1
    datetime.datetime(2025, 6, 2, 2, 0),    # 3 W23
    datetime.datetime(2025, 5, 28, 2, 0),   # 4 W22, newest of May
    datetime.datetime(2025, 5, 20, 2, 0),   # 5 W21
    datetime.datetime(2025, 4, 30, 2, 0),   # 6 W18, newest of April
    datetime.datetime(2025, 4, 10, 2, 0),   # 7 W15
    datetime.datetime(2025, 3, 15, 2, 0),   # 8 W11
]


def store(tmp_path) -> tuple[Catalog, list[str]]:
    catalog = Catalog(str(tmp_path / "backups"), POSTGRESQL)
    catalog.ensure()
    paths = []
    for when in WHEN:
        path = os.path.join(catalog.directory, catalog.file_name(when.astimezone(), ".gz"))
        with open(path, "wb") as handle:
            handle.write(b"backup of %s\n" % when.isoformat().encode())
        paths.append(path)
    return catalog, paths


def test_rules_pick_the_newest_of_each_day_week_and_month():
    kept = _retention.generations(WHEN, Keep(daily=2, weekly=2, monthly=3))
    assert kept == {
        0: ["daily 2025-06-14", "weekly 2025-W24", "monthly 2025-06"],
        1: ["daily 2025-06-05", "weekly 2025-W23"],
        4: ["monthly 2025-05"],
        6: ["monthly 2025-04"],
    }
    assert _retention.generations(WHEN, Keep(weekly=9)) == {i: [w] for i, w in (
        (0, "weekly 2025-W24"), (1, "weekly 2025-W23"), (4, "weekly 2025-W22"), (5, "weekly 2025-W21"),
        (6, "weekly 2025-W18"), (7, "weekly 2025-W15"), (8, "weekly 2025-W11"))}
    assert _retention.generations(WHEN, None) == {} and _retention.generations(WHEN, Keep()) == {}


def test_prune_keeps_the_days_and_the_generations_and_dry_run_lists_the_rest(tmp_path):
    catalog, paths = store(tmp_path)
    before = sorted(os.listdir(catalog.directory))
    keep = Keep(daily=2, weekly=2, monthly=3)
    dry = catalog.prune(7, lambda e: True, now=NOW, dry_run=True, keep=keep)
    gone = [paths[i] for i in (2, 3, 5, 7, 8)]
    assert dry.deleted == gone and dry.protected == paths[0]
    assert dry.generations == {
        os.path.basename(paths[1]): ["daily 2025-06-05", "weekly 2025-W23"],
        os.path.basename(paths[4]): ["monthly 2025-05"],
        os.path.basename(paths[6]): ["monthly 2025-04"],
    }
    assert dry.reason == "kept %s, the newest good backup; 3 older backup(s) kept as generations" % os.path.basename(paths[0])
    assert sorted(os.listdir(catalog.directory)) == before  # a dry run deletes nothing
    done = catalog.prune(7, lambda e: True, now=NOW, keep=keep)
    assert done.deleted == gone
    assert [e.path for e in catalog.entries()] == [paths[i] for i in (0, 1, 4, 6)]
    # the same policy again deletes nothing more
    assert catalog.prune(7, lambda e: True, now=NOW, keep=keep).deleted == []


def test_the_newest_good_backup_is_kept_whatever_the_rules_say(tmp_path):
    catalog, paths = store(tmp_path)
    later = NOW + datetime.timedelta(days=30)  # every backup is older than 7 days
    bad = {paths[0], paths[1]}
    result = catalog.prune(7, lambda e: e.path not in bad, now=later, keep=Keep(daily=1))
    # daily keeps the newest (bad) one; the newest good one, paths[2], stays too
    assert result.protected == paths[2]
    assert [e.path for e in catalog.entries()] == [paths[0], paths[2]]


def test_without_generations_nothing_changes(tmp_path):
    catalog, paths = store(tmp_path)
    result = catalog.prune(7, lambda e: True, now=NOW, keep=None)
    assert result.deleted == paths[1:] and result.generations == {}


@pytest.mark.parametrize("raw, problem", [
    ("weekly", "must be a mapping like {daily: 7, weekly: 4, monthly: 6}"),
    ({"daly": 3}, "unknown key(s) daly: use daily, weekly and monthly"),
    ({"weekly": -1}, "retention_keep.weekly is -1: give a whole number of backups, 0 or more"),
    ({"monthly": "six"}, "retention_keep.monthly is 'six'"),
    ({"daily": True}, "retention_keep.daily is True"),
])
def test_bad_generations_are_refused_naming_the_fix(raw, problem):
    with pytest.raises(ConfigError) as err:
        _retention.keep_from({"retention_keep": raw})
    assert problem in err.value.msg and "nothing was changed" in err.value.msg


def test_generations_from_module_options():
    assert _retention.keep_from({"retention_keep": None}) is None
    assert _retention.keep_from({"retention_keep": {"daily": 7, "weekly": None, "monthly": 0}}) == Keep(daily=7)
    assert Keep(weekly=4, monthly=6).describe() == "4 weekly, 6 monthly"
