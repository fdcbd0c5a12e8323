#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) cclite.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: backup_trend_info
short_description: Compare new backups with the ones before them in the backup catalog
version_added: 0.1.0
description:
  - Takes the run records of a play (C(backup_run_results), see P(cclite.backup.run_results#filter))
    and, for each backup that was made, finds the backups of the same store and series made before
    it in the catalog on the managed host.
  - Adds the size change against the previous backup and the median of the recent ones, and a
    warning when the new backup is much smaller or much larger than that median (the guide's
    "monitor backup size trends").
  - Never changes anything. Records of other actions, failed records and artifacts outside a
    catalog this collection knows are returned unchanged (with an empty C(warnings) list).
author: cclite.backup contributors (@cclite)
extends_documentation_fragment:
  - cclite.backup.size_trend
  - cclite.backup.attributes
attributes:
  check_mode:
    support: full
    details:
      - Reads the same in check mode; it changes nothing in either mode.
  diff_mode:
    support: none
  idempotent:
    support: full
options:
  results:
    description: Run records (C(store), C(action), C(artifact), C(size), C(status), ...).
    type: list
    elements: dict
    required: true
seealso:
  - module: cclite.backup.backup_report
"""

EXAMPLES = r"""
- name: Compare the new backups with the earlier ones
  cclite.backup.backup_trend_info:
    results: "{{ backup_run_results }}"
    smaller_ratio: 0.7
  register: trend

- name: Show the warnings
  ansible.builtin.debug:
    msg: "{{ trend.results | map(attribute='warnings') | flatten }}"
"""

RETURN = r"""
results:
  description: The records, each with these keys added when the catalog has the history.
  returned: always
  type: list
  elements: dict
  contains:
    created: {description: When the new backup was made (ISO 8601)., type: str}
    previous_size: {description: Size of the backup before it., type: int}
    size_change: {description: 'Size minus the previous size, in bytes.', type: int}
    size_change_percent: {description: The change in percent of the previous size., type: float}
    median_size: {description: Median size of up to O(history) earlier backups., type: float}
    median_ratio: {description: Size divided by the median., type: float}
    warnings: {description: 'Size-trend warnings (always present, may be empty).', type: list, elements: str}
warnings_found:
  description: Every size-trend warning, prefixed with store and target.
  returned: always
  type: list
  elements: str
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.cclite.backup.plugins.module_utils._core import _module
from ansible_collections.cclite.backup.plugins.module_utils._reporting import _report


def main() -> None:
    module = AnsibleModule(
        argument_spec=dict(
            results=dict(type="list", elements="dict", required=True),
            **_report.trend_argument_spec()
        ),
        supports_check_mode=True,
    )

    def action() -> dict:
        p = module.params
        out, found = [], []
        for record in p["results"]:
            known = None
            if record.get("action") == "backup" and record.get("artifact"):
                known = _report.size_history(str(record["artifact"]), str(record.get("store") or ""))
            if known is None:
                out.append(dict(record, warnings=list(record.get("warnings") or [])))
                continue
            created, sizes = known
            enriched = _report.trend(dict(record, created=created), sizes, p["history"], p["min_history"],
                                     p["smaller_ratio"], p["larger_ratio"])
            found.extend("%s %s: %s" % (record.get("store"), record.get("target") or "", w) for w in enriched["warnings"])
            out.append(enriched)
        return dict(changed=False, results=out, warnings_found=found)

    _module.run(module, action)


if __name__ == "__main__":
    main()
