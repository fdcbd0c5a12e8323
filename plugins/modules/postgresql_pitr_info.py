#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) cclite.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: postgresql_pitr_info
short_description: Show the recoverable window of PostgreSQL point-in-time recovery
version_added: 0.2.0
description:
  - Reads C(<backup_root>/postgresql_base/) and C(<backup_root>/postgresql/wal/) and returns
    the recoverable window (from the oldest base backup to the newest archived segment), the
    recovery point (age of the newest archived segment) and the gaps in the WAL sequence a kept
    base backup needs (a gap caps the recovery point at its start).
  - Changes nothing.
author: cclite.backup contributors (@cclite)
extends_documentation_fragment:
  - cclite.backup.attributes
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
  idempotent:
    support: full
options:
  backup_root:
    description: Root of the backup catalog.
    type: path
    default: /var/backups/cc-lite
  max_recovery_point_age_seconds:
    description: With O(fail_on_problems), a newest segment older than this is a problem (the server is not archiving).
    type: int
    default: 3600
  fail_on_problems:
    description: Fail when there is a gap, no base backup, or the recovery point is too old.
    type: bool
    default: false
"""

EXAMPLES = r"""
- name: Show the recoverable window
  cclite.backup.postgresql_pitr_info:
    backup_root: /srv/backups
"""

RETURN = r"""
window:
  description: C(from) (the oldest base backup's end) and C(to) (the newest archived segment's time), ISO 8601.
  returned: always
  type: dict
recovery_point_age_seconds:
  description: Seconds since the newest segment was archived; null when none is.
  returned: always
  type: float
gaps:
  description: Sentences naming missing WAL a kept base backup needs.
  returned: always
  type: list
  elements: str
base_backups:
  description: The base backups, newest first (name, path, created, size, sha256, start_lsn, end_lsn, timeline).
  returned: always
  type: list
  elements: dict
segments:
  description: How many segments are archived.
  returned: always
  type: int
newest_segment:
  description: Name of the newest archived segment.
  returned: always
  type: str
newest_segment_time:
  description: When it was archived, ISO 8601.
  returned: always
  type: str
events:
  description: The archive command's last events (failed attempts, attempts killed part way), one line each.
  returned: always
  type: list
  elements: str
failing:
  description: The events since the newest stored segment (the archive is failing now when not empty).
  returned: always
  type: list
  elements: str
problems:
  description: Gaps, a missing base backup, a recovery point older than O(max_recovery_point_age_seconds).
  returned: always
  type: list
  elements: str
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.cclite.backup.plugins.module_utils._core import _module
from ansible_collections.cclite.backup.plugins.module_utils._core._errors import VerifyError
from ansible_collections.cclite.backup.plugins.module_utils._engines.postgresql import _pitr


def main() -> None:
    module = AnsibleModule(
        argument_spec=dict(
            backup_root=dict(type="path", default="/var/backups/cc-lite"),
            max_recovery_point_age_seconds=dict(type="int", default=3600),
            fail_on_problems=dict(type="bool", default=False),
        ),
        supports_check_mode=True,
    )

    def action() -> dict:
        p = module.params
        info = _pitr.archive_info(p["backup_root"])
        problems = list(info["gaps"])
        if info["failing"]:
            problems.append("the archive command has failed since the newest stored segment (the server keeps the WAL and "
                            "retries): %s" % info["failing"][-1])
        if not info["base_backups"]:
            problems.append("there is no base backup: nothing can be recovered yet")
        age = info["recovery_point_age_seconds"]
        if age is None:
            problems.append("no WAL segment is archived: is archive_mode on and archive_command set?")
        elif age > p["max_recovery_point_age_seconds"]:
            problems.append("the newest archived segment is %d seconds old: is the server archiving? (pg_stat_archiver says why not)" % age)
        info["problems"] = problems
        if problems and p["fail_on_problems"]:
            raise VerifyError("point-in-time recovery is not healthy: %s" % "; ".join(problems), **info)
        return dict(changed=False, **info)

    _module.run(module, action)


if __name__ == "__main__":
    main()
