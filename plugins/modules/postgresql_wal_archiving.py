#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) cclite.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: postgresql_wal_archiving
short_description: Make a PostgreSQL server archive its WAL with the collection's archive command
version_added: 0.2.0
description:
  - Checks that the server's OS user can write C(<backup_root>/postgresql/wal/) and read the
    archive script and its settings there (the role installs them), then sets C(archive_mode=on)
    and C(archive_command) to that script with C(ALTER SYSTEM) and reloads.
  - C(archive_mode) takes effect only at a restart; with O(restart) the server is restarted
    (in docker mode the container) when it is pending.
  - Returns the server's C(pg_stat_archiver) counters (failed archive attempts are reported there).
author: cclite.backup contributors (@cclite)
extends_documentation_fragment:
  - cclite.backup.postgresql
  - cclite.backup.attributes
attributes:
  check_mode:
    support: none
  diff_mode:
    support: none
  idempotent:
    support: full
options:
  backup_root:
    description: Root of the backup catalog.
    type: path
    default: /var/backups/cc-lite
  restart:
    description: Restart the server when archive_mode is pending.
    type: bool
    default: false
  os_user:
    description: The server's OS user.
    type: str
    default: postgres
  lock_timeout:
    description: Accepted for the role's C(module_defaults); unused.
    type: int
    default: 600
"""

EXAMPLES = r"""
- name: Archive the WAL
  cclite.backup.postgresql_wal_archiving:
    backup_root: /srv/backups
    restart: true
"""

RETURN = r"""
archive_command:
  description: The archive_command set.
  returned: always
  type: str
settings_changed:
  description: Settings changed by this run.
  returned: always
  type: list
  elements: str
restart_needed:
  description: archive_mode waits for a restart that was not made.
  returned: always
  type: bool
restarted:
  description: Whether the server was restarted.
  returned: always
  type: bool
problems:
  description: A sentence when the server's last archive attempt failed (archiving is failing now).
  returned: always
  type: list
  elements: str
archiver:
  description: pg_stat_archiver (archived_count, failed_count, last_archived_wal, last_failed_wal, last_archived_time, last_failed_time as epoch seconds).
  returned: always
  type: dict
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.cclite.backup.plugins.module_utils._core import _module
from ansible_collections.cclite.backup.plugins.module_utils._engines.postgresql import _client as pg
from ansible_collections.cclite.backup.plugins.module_utils._engines.postgresql import _pitr


def main() -> None:
    argument_spec = dict(
        backup_root=dict(type="path", default="/var/backups/cc-lite"),
        restart=dict(type="bool", default=False),
        os_user=dict(type="str", default="postgres"),
        lock_timeout=dict(type="int", default=600),
    )
    argument_spec.update(pg.connection_argument_spec())
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=False)

    def action() -> dict:
        p = module.params
        conn = pg.connection_from(p)
        data, config, major = _pitr.server_paths(conn)
        server = _pitr.Server(conn, p["os_user"], data, config, "/usr/lib/postgresql/%s/bin" % major)
        return _pitr.configure_archiving(server, _pitr.wal_dir(p["backup_root"]), p["restart"])

    _module.run(module, action)


if __name__ == "__main__":
    main()
