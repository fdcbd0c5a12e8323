#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) cclite.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
# The documentation of the backup_job action (plugins/action/backup_job.py); there is no module code.

from __future__ import annotations

DOCUMENTATION = r"""
module: backup_job
short_description: Run a backup or restore module and show its progress while it works
version_added: 0.1.0
description:
  - Runs a backup or restore module of this collection (for example M(cclite.backup.postgresql_backup))
    asynchronously on the managed host and polls it. Once the job has run O(quiet) seconds, a
    line per poll shows its progress, read from the module's status file (O(progress_file)) -
    the host, the store, the phase, the bytes so far against the expected size (the previous
    backup's size, or the backup file's size for a restore), the rate and the time left.
  - Returns the module's own result, as if the module had run in the task (failures with their
    message), plus RV(progress_lines).
  - "O(mode=start) only starts the job and returns it as RV(job); O(mode=wait) waits for such a
    job. A consistent set starts its jobs with O(hold), waits with O(mode=ready) until each has
    prepared everything and holds right before fixing its store's point in time, pauses the
    application, and with O(mode=fixed) and O(release) lets them go and waits until each has
    fixed its point (PostgreSQL's snapshot exported, Redis's BGSAVE forked, Qdrant's last
    snapshot started) or ended."
  - In check mode the module runs at once, without a status file.
author: cclite.backup contributors (@cclite)
extends_documentation_fragment:
  - cclite.backup.attributes
attributes:
  check_mode:
    support: full
    details:
      - The module runs in check mode (it predicts); nothing runs in the background.
  diff_mode:
    support: none
  idempotent:
    support: none
    details:
      - As the module it runs.
options:
  module:
    description: The module to run (required with O(mode=run) and O(mode=start)).
    type: str
  module_args:
    description:
      - The module's options, all of them (C(module_defaults) do not reach a module this action
        starts). Options set to null are left out.
    type: dict
    default: {}
  progress_file:
    description:
      - Where the module keeps its status file (passed to it as its C(progress_file)). Without
        it the job runs and is waited for, with no progress lines.
      - The action also keeps a heartbeat beside it, C(<progress_file>.alive) (0600), touched
        while it polls and removed when the job ends. When the ansible-playbook run is killed,
        the task's worker (which survives) removes it and fails; the module then publishes
        nothing (a backup) or does not swap (a restore), kills what it runs and ends. A
        heartbeat not touched for 120 seconds (the controller vanished) counts the same.
    type: str
  mode:
    description:
      - V(run) starts the module and waits for it; V(start) only starts it; V(wait) waits for
        O(job); V(ready) waits until each of O(jobs) holds before its fix (or ended); V(fixed)
        waits until each of O(jobs) has fixed its point in time (or ended).
    type: str
    choices: [run, start, wait, ready, fixed]
    default: run
  hold:
    description:
      - With O(mode=start), make the module hold right before it fixes its point in time, until
        released (a file C(<progress_file>.hold), removed by O(release); after 300 seconds the
        module goes on by itself).
    type: bool
    default: false
  release:
    description: With O(mode=fixed), first release the held jobs of O(jobs).
    type: bool
    default: false
  job:
    description: The RV(job) of an O(mode=start) task, for O(mode=wait).
    type: dict
  jobs:
    description:
      - The RV(job) of O(mode=start) tasks, for O(mode=ready) and O(mode=fixed).
      - With O(mode=wait), the other jobs of a consistent set, whose heartbeats the wait keeps
        touching (or removes, once the run ended) while it waits for O(job).
    type: list
    elements: dict
    default: []
  interval:
    description:
      - Seconds between progress lines. The end of the job is seen within 50 ms whatever this is
        (each poll waits on the host up to half a second for the module's result).
    type: float
    default: 2.0
  quiet:
    description: Seconds a job runs before the first progress line; shorter jobs show none.
    type: float
    default: 3.0
  timeout:
    description:
      - With O(mode=run) or O(mode=start), seconds after which the background job is killed
        (the module's own clean-up of temp files then runs at its next start); V(0) gives it a
        month. The task then fails saying the job ran longer than its timeout (C(rc) 137).
      - With O(mode=ready) and O(mode=fixed), seconds to wait at most; the jobs still waited for
        are in RV(waiting).
    type: int
    default: 0
notes:
  - The job runs on the managed host in the background, as a task with C(async) does, but without
    C(async_wrapper) (a module process of its own per job). A background C(sh) (C(nohup)) runs the
    module file from the task's remote temp directory, with its output in files there; the
    directory is removed once the result is read. A job whose run ended sees its heartbeat go
    (see the README's fault guarantees), publishes nothing and ends. POSIX hosts only.
  - The status file holds numbers and names only (never a secret), is mode 0600 and is removed
    by the module when it ends.
seealso:
  - module: cclite.backup.postgresql_backup
  - module: cclite.backup.redis_backup
  - module: cclite.backup.qdrant_backup
"""

EXAMPLES = r"""
- name: Back up a database, with progress lines while it runs
  cclite.backup.backup_job:
    module: cclite.backup.postgresql_backup
    module_args:
      database: operator_demo
      backup_root: /var/backups/cc-lite
    progress_file: /var/backups/cc-lite/.progress/postgresql-operator_demo.json
  register: made
"""

RETURN = r"""
progress_lines:
  description: How many progress lines were shown (0 for a job shorter than O(quiet)).
  returned: with O(mode=run) and O(mode=wait)
  type: int
job:
  description: The started job (C(ansible_job_id), C(results_file), C(progress_file), C(started)).
  returned: with O(mode=start)
  type: dict
points:
  description: Per job id, the store, target and time (epoch seconds) its point in time was fixed (null with O(mode=ready)).
  returned: with O(mode=ready) and O(mode=fixed)
  type: dict
ended:
  description: Job ids that ended before saying their point was fixed (they failed, or ended quickly).
  returned: with O(mode=ready) and O(mode=fixed)
  type: list
  elements: str
waiting:
  description: Job ids still waited for when O(timeout) ran out.
  returned: with O(mode=ready) and O(mode=fixed)
  type: list
  elements: str
all_fixed:
  description: Whether every job got there (held, or fixed its point in time).
  returned: with O(mode=ready) and O(mode=fixed)
  type: bool
seconds:
  description: Seconds waited.
  returned: with O(mode=ready) and O(mode=fixed)
  type: float
"""
