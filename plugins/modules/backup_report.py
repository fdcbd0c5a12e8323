#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) cclite.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: backup_report
short_description: Write the log, JSON report and Prometheus metrics of a backup, verify or restore run
version_added: 0.1.0
description:
  - Writes C(<backup_root>/logs/<kind>_YYYYMMDD_HHMMSS.log), a readable log of the run on this
    host (the guide's C(backup_YYYYMMDD_HHMMSS.log) for backup runs), and the same data as a JSON
    report next to it (run id, host, stores, artifacts, durations, verification results,
    notification outcomes).
  - Deletes run logs and reports older than O(retention_days); only files named like its own
    are touched.
  - Rotates C(<backup_root>/logs/cron.log) (what the jobs of the C(cclite.backup.schedule) role
    append to) once it holds a line of an earlier day - renamed to C(cron_YYYYMMDD_HHMMSS.log), stamped
    with the time it was closed - and deletes those with the run logs, after O(retention_days),
    so every line stays at least that long.
  - With O(metrics_dir), updates the node-exporter textfile C(<metrics_dir>/<metrics_file>)
    atomically (temp file and rename, under a lock so concurrent runs do not lose updates) -
    last run and status per action, last good backup time, duration and size, size against the
    median, last verification time and status; per store and target.
  - Every entry of O(warn) becomes an Ansible warning of this task.
author: cclite.backup contributors (@cclite)
extends_documentation_fragment:
  - cclite.backup.attributes
attributes:
  check_mode:
    support: full
    details:
      - Returns the paths it would write, the files it would delete and the name C(cron.log)
        would get, and writes nothing.
  diff_mode:
    support: none
  idempotent:
    support: none
    details:
      - Every run writes a new log and report; the metrics of the stores it names are updated.
options:
  backup_root:
    description: Root of the backup tree; the files go to its C(logs/) directory.
    type: path
    required: true
  host:
    description: Name of the host the run was on, as the inventory knows it.
    type: str
    required: true
  run:
    description:
      - The run - C(id), C(kind) (backup, verify, restore; names the files), C(started) and
        C(ended) (ISO 8601).
    type: dict
    required: true
  results:
    description: The run records of this host (see P(cclite.backup.run_results#filter)).
    type: list
    elements: dict
    default: []
  notifications:
    description: Outcome of each notification (C(channel), C(status), C(error)), kept in the report.
    type: list
    elements: dict
    default: []
  retention_days:
    description:
      - Delete run logs and reports older than this many days.
      - At least V(1); V(0) or less is refused before anything is done.
    type: int
    default: 30
  metrics_dir:
    description: Directory of node-exporter's textfile collector; empty writes no metrics.
    type: path
    default: ""
  metrics_file:
    description: Name of the textfile (must end in C(.prom) for node-exporter to read it).
    type: str
    default: cclite_backup.prom
  warn:
    description: Sentences to report as warnings of this task.
    type: list
    elements: str
    default: []
seealso:
  - module: cclite.backup.backup_trend_info
"""

EXAMPLES = r"""
- name: Write the run log, report and metrics
  cclite.backup.backup_report:
    backup_root: /var/backups/cc-lite
    host: "{{ inventory_hostname }}"
    run:
      id: "20251226_020000"
      kind: backup
      started: "2025-12-26T02:00:00+00:00"
      ended: "2025-12-26T02:03:10+00:00"
    results: "{{ backup_run_results }}"
    metrics_dir: /var/lib/prometheus/node-exporter
"""

RETURN = r"""
log:
  description:
    - Path of the run log; V(null) when it could not be written (a read-only or full
      O(backup_root)). Then the task warns and says why instead of failing, so that the run's
      own error stays the one reported.
  returned: always
  type: str
  sample: /var/backups/cc-lite/logs/backup_20251226_020000.log
report:
  description: Path of the JSON report; V(null) when it could not be written (see RV(log)).
  returned: always
  type: str
metrics:
  description: Path of the metrics textfile (null without O(metrics_dir)).
  returned: always
  type: str
status:
  description: ok, problems or failed - the worst status of the records.
  returned: always
  type: str
pruned:
  description: Run logs and reports deleted by retention (in check mode, that would be deleted).
  returned: always
  type: list
  elements: str
rotated:
  description: What C(cron.log) was renamed to (in check mode, would be); V(null) when it was not due.
  returned: always
  type: str
  sample: /var/backups/cc-lite/logs/cron_20251227_020001.log
"""

import datetime
import os

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.cclite.backup.plugins.module_utils._core import _module
from ansible_collections.cclite.backup.plugins.module_utils._reporting import _report
from ansible_collections.cclite.backup.plugins.module_utils._core._errors import ConfigError


def main() -> None:
    module = AnsibleModule(
        argument_spec=dict(
            backup_root=dict(type="path", required=True),
            host=dict(type="str", required=True),
            run=dict(type="dict", required=True),
            results=dict(type="list", elements="dict", default=[]),
            notifications=dict(type="list", elements="dict", default=[]),
            retention_days=dict(type="int", default=30),
            metrics_dir=dict(type="path", default=""),
            metrics_file=dict(type="str", default=_report.METRICS_FILE),
            warn=dict(type="list", elements="str", default=[]),
        ),
        supports_check_mode=True,
    )

    def action() -> dict:
        p = module.params
        retention_days = _module.retention_days_from(p)
        if not os.path.isabs(p["backup_root"]):
            raise ConfigError("backup_root must be an absolute path, got %r" % p["backup_root"])
        if p["metrics_dir"] and not p["metrics_file"].endswith(".prom"):
            raise ConfigError("metrics_file %r must end in .prom, or node-exporter will not read it" % p["metrics_file"])
        for sentence in p["warn"]:
            module.warn(sentence)
        run = dict(p["run"])
        run.setdefault("ended", datetime.datetime.now().astimezone().isoformat())
        logs = os.path.join(p["backup_root"], "logs")
        report = _report.build_report(run, p["host"], p["results"], p["notifications"])
        stamp = _report.run_stamp(run)
        metrics = os.path.join(p["metrics_dir"], p["metrics_file"]) if p["metrics_dir"] else None
        if module.check_mode:
            log, path = _report.run_paths(logs, str(report["playbook"] or "run"), stamp)
            rotated = _report.rotate_cron_log(logs, dry_run=True)
            pruned = _report.prune_runs(logs, retention_days, dry_run=True)
        else:
            try:
                rotated = _report.rotate_cron_log(logs)
                pruned = _report.prune_runs(logs, retention_days)
                log, path = _report.write_run(logs, report, stamp)
                if metrics:
                    ended = _report.epoch(run.get("ended"), datetime.datetime.now().timestamp())
                    _report.write_metrics(p["metrics_dir"], p["results"], ended, p["metrics_file"])
            except OSError as exc:
                # the run's own outcome (often the very same unwritable backup_root) must stay the
                # error people see: the report says it could not be kept, and why, without failing
                where = exc.filename or logs
                sentence = "%s; the run's status was %s" % (_report.unwritable_sentence(where, exc), report["status"])
                module.warn(sentence)
                return dict(changed=False, log=None, report=None, metrics=None, status=report["status"], pruned=[], rotated=None,
                            msg=sentence)
        verb = "would write" if module.check_mode else "wrote"
        msg = "%s %s and %s%s" % (verb, log, path, (" and updated %s" % metrics) if metrics else "")
        return dict(changed=True, log=log, report=path, metrics=metrics, status=report["status"], pruned=pruned, rotated=rotated,
                    msg=msg)

    _module.run(module, action)


if __name__ == "__main__":
    main()
