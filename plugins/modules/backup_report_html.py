#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) cclite.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: backup_report_html
short_description: Write one self-contained HTML page with the backup history of every host
version_added: 0.1.0
description:
  - Takes, per host, the listings of the store info modules (C(backup_catalog) of the store
    roles' C(list) entry points, with the copies on S3 when listed) and the run reports of
    M(cclite.backup.backup_run_info), and writes one HTML page at O(dest), meant to run on the
    controller (delegated to C(localhost), once per play).
  - Per host and store - size and duration of each night's backup as inline SVG charts, each
    backup's verification state, checks and problems, the nights without a backup (a failed run
    or nothing at all, from the first to the last night known), size anomalies (the size trend
    of M(cclite.backup.backup_trend_info) applied to each backup and the ones before it, see
    O(history)), the recovery point (age of the newest good backup), the newest complete set
    (the newest night on which every store has a good backup) and the last successful restore
    drill (a C(drill) run report), or "no drill recorded".
  - The page needs no network (no CDN, no script library). The facts it shows are embedded as
    JSON in C(<script type="application/json" id="report-data">) for machines.
  - Only names, times, sizes, states and the checks' sentences are rendered; connection options
    are never read.
author: cclite.backup contributors (@cclite)
extends_documentation_fragment:
  - cclite.backup.size_trend
  - cclite.backup.attributes
attributes:
  check_mode:
    support: full
    details:
      - Builds the page and reports whether it would change O(dest), without writing it.
  diff_mode:
    support: none
  idempotent:
    support: none
    details:
      - The page names the time it was made and the age of each backup, so it changes on every run.
options:
  dest:
    description: Where to write the page (on the host the module runs on, normally the controller).
    type: path
    required: true
  hosts:
    description:
      - Per inventory host, C(catalog) (store name to the list of its listings, as the store
        roles' C(list) entry points record it in C(backup_catalog)) and C(runs) (the C(runs) of
        M(cclite.backup.backup_run_info)).
    type: dict
    required: true
  title:
    description: Title of the page.
    type: str
    default: cc-lite backups
  max_age_hours:
    description: A recovery point older than this is marked.
    type: float
    default: 25.0
seealso:
  - module: cclite.backup.backup_run_info
  - module: cclite.backup.backup_trend_info
"""

EXAMPLES = r"""
- name: Write the history report on the controller
  cclite.backup.backup_report_html:
    dest: ./cclite-backup-report.html
    hosts: "{{ dict(ansible_play_hosts | zip(ansible_play_hosts | map('extract', hostvars, '__report_history'))) }}"
  delegate_to: localhost
  run_once: true
"""

RETURN = r"""
dest:
  description: Path of the page.
  returned: always
  type: str
hosts:
  description: Per host, the number of backups, nights without a backup and size anomalies of each store.
  returned: always
  type: dict
  sample: {db1: {postgresql: {backups: 40, gaps: 1, anomalies: 1}}}
"""

import os

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.cclite.backup.plugins.module_utils._core import _manifest, _module
from ansible_collections.cclite.backup.plugins.module_utils._core._errors import ConfigError
from ansible_collections.cclite.backup.plugins.module_utils._reporting import _html, _report


def main() -> None:
    module = AnsibleModule(
        argument_spec=dict(
            dest=dict(type="path", required=True),
            hosts=dict(type="dict", required=True),
            title=dict(type="str", default="cc-lite backups"),
            max_age_hours=dict(type="float", default=25.0),
            **_report.trend_argument_spec()
        ),
        supports_check_mode=True,
    )

    def action() -> dict:
        p = module.params
        dest = os.path.abspath(p["dest"])
        if not os.path.isdir(os.path.dirname(dest)):
            raise ConfigError("the directory of dest %s does not exist: create it or choose another path" % dest)
        trend = _html.Trend(p["history"], p["min_history"], p["smaller_ratio"], p["larger_ratio"])
        facts = _html.build(p["hosts"], trend)
        page = _html.render(facts, p["title"], p["max_age_hours"])
        summary = {h["host"]: {s["label"]: {"backups": len(s["backups"]), "gaps": len(s["gaps"]), "anomalies": len(s["anomalies"])}
                               for s in h["stores"]} for h in facts["hosts"]}
        if not module.check_mode:
            _manifest.write_text(dest, page, 0o644)
        verb = "would write" if module.check_mode else "wrote"
        return dict(changed=True, dest=dest, hosts=summary, msg="%s %s (%d host(s))" % (verb, dest, len(facts["hosts"])))

    _module.run(module, action)


if __name__ == "__main__":
    main()
