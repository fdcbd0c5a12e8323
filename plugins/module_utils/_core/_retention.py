# -*- coding: utf-8 -*-
# Copyright (c) cclite.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Retention by generations as well as by age: which backups ``keep`` (N daily, weekly,
monthly) holds on to, the way restic's and borg's ``--keep-daily`` and friends choose.

A backup is kept when it is younger than the retention in days, *or* a generation rule picks
it; the newest good backup is kept whatever the rules say (the caller protects it). Each rule
walks the backups newest first and keeps the newest backup of each day (ISO week, calendar
month) until it has kept N of them; days without a backup do not count. Local stores
(``_catalog.Catalog.prune``) and S3 (``_offsite._prune``) use the same choice.
"""

from __future__ import annotations

import dataclasses
import datetime
import typing as t

from ansible_collections.cclite.backup.plugins.module_utils._core._errors import ConfigError

RULES = ("daily", "weekly", "monthly")


@dataclasses.dataclass(frozen=True)
class Keep:
    daily: int = 0
    weekly: int = 0
    monthly: int = 0

    def __bool__(self) -> bool:
        return bool(self.daily or self.weekly or self.monthly)

    def describe(self) -> str:
        return ", ".join("%d %s" % (getattr(self, rule), rule) for rule in RULES if getattr(self, rule)) or "none"


def _bucket(rule: str, when: datetime.datetime) -> str:
    if rule == "daily":
        return when.strftime("%Y-%m-%d")
    if rule == "weekly":
        year, week, _day = when.isocalendar()
        return "%04d-W%02d" % (year, week)
    return when.strftime("%Y-%m")


def generations(created: t.Sequence[datetime.datetime], keep: Keep | None) -> dict[int, list[str]]:
    """Which of the backups created at ``created`` (newest first) the rules keep: index -> why
    (``daily 2026-01-05``, ``weekly 2026-W01``, ``monthly 2026-01``)."""
    kept: dict[int, list[str]] = {}
    if not keep:
        return kept
    for rule in RULES:
        left, last = getattr(keep, rule), None
        for index, when in enumerate(created):
            if left <= 0:
                break
            bucket = _bucket(rule, when)
            if bucket != last:
                kept.setdefault(index, []).append("%s %s" % (rule, bucket))
                last = bucket
                left -= 1
    return kept


def keep_from(params: t.Mapping[str, t.Any], option: str = "retention_keep") -> Keep | None:
    """The generations of ``option`` (a dict of daily/weekly/monthly counts), or ``None``."""
    raw = params.get(option)
    if not raw:
        return None
    if not isinstance(raw, t.Mapping):
        raise ConfigError("%s must be a mapping like {daily: 7, weekly: 4, monthly: 6}, got %r; nothing was changed" % (option, raw))
    unknown = sorted(set(raw) - set(RULES))
    if unknown:
        raise ConfigError("%s has unknown key(s) %s: use daily, weekly and monthly; nothing was changed" % (option, ", ".join(unknown)))
    counts = {}
    for rule in RULES:
        value = raw.get(rule)
        if value is None:
            value = 0
        try:
            number = int(value)
        except (TypeError, ValueError):
            number = -1
        if isinstance(value, bool) or number < 0 or str(number) != str(value).strip():
            raise ConfigError("%s.%s is %r: give a whole number of backups, 0 or more; nothing was changed" % (option, rule, value))
        counts[rule] = number
    return Keep(**counts)
