#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) cclite.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: backup_run_info
short_description: Read the JSON run reports under the backup root's logs directory
version_added: 0.1.0
description:
  - Reads the run reports M(cclite.backup.backup_report) wrote under C(<backup_root>/logs/)
    (C(<kind>_YYYYMMDD_HHMMSS.json)), newest first, each cut to the run (id, kind, host, times,
    status, stores) and its records (store, action, target, status, artifact, size, duration,
    problems, warnings, error).
  - Files that are not run reports, or cannot be read, are skipped. Never changes anything.
author: cclite.backup contributors (@cclite)
extends_documentation_fragment:
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
  backup_root:
    description: Root of the backup tree; the reports are in its C(logs/) directory.
    type: path
    default: /var/backups/cc-lite
  kinds:
    description: Only runs of these kinds (C(backup), C(verify), C(restore), ...); empty reads all.
    type: list
    elements: str
    default: []
seealso:
  - module: cclite.backup.backup_report
  - module: cclite.backup.backup_report_html
"""

EXAMPLES = r"""
- name: Read the reports of the backup runs
  cclite.backup.backup_run_info:
    backup_root: /var/backups/cc-lite
    kinds: [backup]
  register: runs
"""

RETURN = r"""
runs:
  description: The run reports, newest first.
  returned: always
  type: list
  elements: dict
  contains:
    run_id: {description: Id of the run (YYYYMMDD_HHMMSS)., type: str, returned: always}
    playbook: {description: "Kind of the run (backup, verify, restore).", type: str, returned: always}
    host: {description: Host the run was on., type: str, returned: always}
    started: {description: When the run started (ISO 8601)., type: str, returned: always}
    ended: {description: When the run ended (ISO 8601)., type: str, returned: always}
    status: {description: "ok, problems or failed.", type: str, returned: always}
    stores: {description: Stores the run handled., type: list, elements: str, returned: always}
    file: {description: Name of the report file., type: str, returned: always}
    results: {description: The run's records., type: list, elements: dict, returned: always}
"""

import os

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.cclite.backup.plugins.module_utils._core import _module
from ansible_collections.cclite.backup.plugins.module_utils._reporting import _report


def main() -> None:
    module = AnsibleModule(
        argument_spec=dict(
            backup_root=dict(type="path", default="/var/backups/cc-lite"),
            kinds=dict(type="list", elements="str", default=[]),
        ),
        supports_check_mode=True,
    )

    def action() -> dict:
        logs = os.path.join(module.params["backup_root"], "logs")
        runs = _report.read_runs(logs, module.params["kinds"])
        return dict(changed=False, runs=runs, msg="%d run report(s) in %s" % (len(runs), logs))

    _module.run(module, action)


if __name__ == "__main__":
    main()
