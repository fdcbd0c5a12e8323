#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) cclite.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: postgresql_pitr_restore
short_description: Recover a PostgreSQL server to a point in time from a base backup and the WAL archive
version_added: 0.2.0
description:
  - The core's one restore flow with a point-in-time engine. It picks the newest base backup
    that ends before the target (or the one named), reads it whole against its manifest,
    unpacks it into a new data directory beside the live one (C(<data>.pitr-<stamp>)), checks
    it with C(pg_verifybackup), and starts a temporary server on it (a private socket, port
    5499, no TCP, no archiving) that replays the WAL archive to the target and is promoted.
  - Only once that server answered is the live server stopped, its data directory renamed to
    C(<data>.pre-pitr-<stamp>) and the recovered one put in its place, and the server started.
    If it does not come up, the old directory is put back and started. The old directory is
    removed after success unless O(keep_previous).
  - The recovery settings are reset on the recovered server; the new timeline's history file is
    archived so later recoveries can follow it.
  - A restore that was killed leaves its new data directory, and may leave its temporary server
    running on it; the next restore (holding the store lock, so no other is running) stops that
    server and removes the directory first (RV(leftovers_removed)).
  - In docker mode the temporary server runs inside the container (C(docker exec)); the swap
    stops the container and renames through a throwaway container that shares its volumes, so
    the data directory must be on a volume or bind mount, as in the guide.
author: cclite.backup contributors (@cclite)
extends_documentation_fragment:
  - cclite.backup.postgresql
  - cclite.backup.attributes
attributes:
  check_mode:
    support: full
    details:
      - Chooses the base backup and reads it whole; changes nothing.
  diff_mode:
    support: none
  idempotent:
    support: none
options:
  backup_root:
    description: Root of the backup catalog (base backups in C(postgresql_base/), WAL in C(postgresql/wal/)).
    type: path
    default: /var/backups/cc-lite
  target:
    description: What to recover to.
    type: str
    choices: [time, lsn, name, latest]
    default: latest
  target_value:
    description:
      - With O(target=time), C(YYYY-MM-DD HH:MM:SS[+TZ]) (without a zone, the managed host's);
        with O(target=lsn), an LSN such as C(0/3000060); with O(target=name), a restore point
        made with C(pg_create_restore_point()).
    type: str
    default: ""
  base_backup:
    description: The base backup to start from; C(auto) picks the newest that ends before the target.
    type: str
    default: auto
  confirm:
    description: Must be true for anything to change.
    type: bool
    default: false
  keep_previous:
    description: Keep the replaced data directory (C(<data>.pre-pitr-<stamp>)).
    type: bool
    default: false
  os_user:
    description: The server's OS user (owner of the data directory), here or in the container.
    type: str
    default: postgres
  data_directory:
    description: The live data directory; empty to ask the running server.
    type: str
    default: ""
  config_file:
    description: The server's configuration file; empty to ask the running server.
    type: str
    default: ""
  bin_dir:
    description: Where pg_ctl and pg_verifybackup are; empty for C(/usr/lib/postgresql/<major>/bin).
    type: str
    default: ""
  lock_timeout:
    description: Seconds to wait for another run on the store.
    type: int
    default: 600
"""

EXAMPLES = r"""
- name: Recover to just before the mistake
  cclite.backup.postgresql_pitr_restore:
    backup_root: /srv/backups
    target: time
    target_value: "2026-12-06 14:03:00+00"
    confirm: true
"""

RETURN = r"""
restored_from:
  description: The base backup used.
  returned: always
  type: dict
target:
  description: The target, in words.
  returned: always
  type: str
reached_lsn:
  description: The LSN where the recovered server started its new timeline.
  returned: success
  type: str
timeline:
  description: The recovered server's timeline.
  returned: success
  type: int
databases:
  description: The databases the recovered server holds.
  returned: success
  type: list
  elements: str
data_directory:
  description: The live data directory.
  returned: always
  type: str
previous_data_directory:
  description: Where the replaced data directory was kept (null once removed).
  returned: always
  type: str
rollback:
  description: Where the replaced data is and how to go back to it.
  returned: success
  type: dict
leftovers_removed:
  description:
    - The new data directories of earlier restores that were killed (C(<data>.pitr-<stamp>)),
      removed before this one began; the recovery server such a run leaves running is stopped first.
  returned: always
  type: list
  elements: str
"""

import os

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.cclite.backup.plugins.module_utils._core import _module
from ansible_collections.cclite.backup.plugins.module_utils._core._artifact import utcnow
from ansible_collections.cclite.backup.plugins.module_utils._core._restore import RestoreSpec
from ansible_collections.cclite.backup.plugins.module_utils._engines.postgresql import _client as pg
from ansible_collections.cclite.backup.plugins.module_utils._engines.postgresql import _pitr


def main() -> None:
    argument_spec = dict(
        backup_root=dict(type="path", default="/var/backups/cc-lite"),
        target=dict(type="str", default="latest", choices=list(_pitr.TARGET_KINDS)),
        target_value=dict(type="str", default=""),
        base_backup=dict(type="str", default="auto"),
        confirm=dict(type="bool", default=False),
        keep_previous=dict(type="bool", default=False),
        os_user=dict(type="str", default="postgres"),
        data_directory=dict(type="str", default=""),
        config_file=dict(type="str", default=""),
        bin_dir=dict(type="str", default=""),
        lock_timeout=dict(type="int", default=600),
    )
    argument_spec.update(pg.connection_argument_spec())
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)

    def action() -> dict:
        p = module.params
        target = _pitr.Target_(p["target"], p["target_value"])
        conn = pg.connection_from(p)
        data, config, major = p["data_directory"], p["config_file"], ""
        if not data or not config:
            data, config, major = _pitr.server_paths(conn)
            data, config = p["data_directory"] or data, p["config_file"] or config
        bin_dir = p["bin_dir"] or ("/usr/lib/postgresql/%s/bin" % major if major else "")
        catalog = _pitr.base_catalog(p["backup_root"])
        name = _pitr.choose_base(catalog, target) if p["base_backup"] == "auto" else p["base_backup"]
        spec = RestoreSpec(catalog, name, p["confirm"], safety_backup=False, keep_previous=p["keep_previous"], lock_timeout=p["lock_timeout"])
        server = _pitr.Server(conn, p["os_user"], data, config, bin_dir)
        settings = os.path.join(_pitr.wal_dir(p["backup_root"]), ".cclite-wal.json")
        engine = _pitr.PitrRestore(server, target, p["backup_root"], settings, utcnow().strftime("%Y%m%d%H%M%S"))
        return _pitr.restore(spec, engine, module.check_mode)

    _module.run(module, action)


if __name__ == "__main__":
    main()
