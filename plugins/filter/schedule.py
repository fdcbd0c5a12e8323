# -*- coding: utf-8 -*-
# Copyright (c) cclite.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The systemd OnCalendar= expression of a scheduled job given as cron fields."""

from __future__ import annotations

import re
import typing as t

from ansible.errors import AnsibleFilterError

DAYS = ("Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat")


def _number(job: t.Mapping[str, t.Any], field: str, high: int) -> str:
    value = str(job.get(field, "*")).strip()
    if value == "*":
        return "*"
    if not re.fullmatch(r"\d{1,2}", value) or int(value) > high:
        raise AnsibleFilterError(
            "job %s: %s %r is not '*' or a number from 0 to %d (use on_calendar for other systemd schedules)"
            % (job.get("name"), field, value, high)
        )
    return "%02d" % int(value)


def _weekday(job: t.Mapping[str, t.Any]) -> str:
    value = str(job.get("weekday", "*")).strip().lower()
    if value == "*":
        return ""
    days = []
    for part in value.split(","):
        if re.fullmatch(r"[0-7]", part):
            days.append(DAYS[int(part) % 7])
        elif part[:3].capitalize() in DAYS and len(part) >= 3:
            days.append(part[:3].capitalize())
        else:
            raise AnsibleFilterError("job %s: weekday %r is not '*', 0-7, sun..sat or a comma list of them" % (job.get("name"), value))
    return ",".join(days) + " "


def schedule_calendar(job: t.Mapping[str, t.Any]) -> str:
    """``on_calendar`` when the job has one, else the cron fields as ``[Dow ]*-*-* HH:MM:00``."""
    if job.get("on_calendar"):
        return str(job["on_calendar"])
    day = _day(job)
    return "%s*-*-%s %s:%s:00" % (_weekday(job), "*" if day == "*" else "%02d" % int(day), _number(job, "hour", 23), _number(job, "minute", 59))


def _day(job: t.Mapping[str, t.Any]) -> str:
    """The day of the month, 1-28 or "*" (later days do not come every month)."""
    value = str(job.get("day", "*")).strip()
    if value != "*" and not (re.fullmatch(r"\d{1,2}", value) and 1 <= int(value) <= 28):
        raise AnsibleFilterError("job %s: day %r is not '*' or a day of the month from 1 to 28" % (job.get("name"), value))
    return value


def cron_day(job: t.Mapping[str, t.Any]) -> str:
    """The job's day of the month as cron wants it (checked the same way as for systemd)."""
    return _day(job)


def cron_weekday(job: t.Mapping[str, t.Any]) -> str:
    """The job's weekday as cron wants it (checked the same way as for systemd)."""
    _weekday(job)
    return str(job.get("weekday", "*")).strip().lower()


class FilterModule:
    def filters(self) -> dict[str, t.Callable[..., t.Any]]:
        return {"schedule_calendar": schedule_calendar, "cron_weekday": cron_weekday, "cron_day": cron_day}
