#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) cclite.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: postgresql_restore
short_description: Restore a PostgreSQL database from the backup catalog, safely
version_added: 0.1.0
description:
  - Restores a backup made by M(cclite.backup.postgresql_backup) (or by the guide's scripts)
    into a database, so that a failure at any step leaves the current data as it was.
  - "The steps (the shared restore flow): refuse without O(confirm); check the manifest (there,
    readable, the file's size) and the encryption key; load the dump into a new database in one
    transaction, and check the whole file while it loads (stream, sha256 against the manifest,
    pg_dump's closing line; a directory backup's files each against their sha256, read beside
    C(pg_restore -j)) - the file is read once; compare every table's row count with the
    manifest, with ANALYZE of the new database beside the count (its statistics move with it);
    swap: refuse new connections to the current database, end its sessions, and rename it to
    C(<database>__pre_restore_<stamp>) and the new one into its place in one transaction. A file that fails its checks, or any failure before the swap,
    drops the new database and leaves the current one serving, untouched; with O(name=latest)
    a newest backup that fails its checks is passed over for the next one (said in RV(notes))."
  - "The replaced database itself is the rollback point: it keeps connections disabled, so it
    holds every write acknowledged before the swap and nothing after it. It is kept by default
    (O(keep_previous)); of the replaced databases kept for the same database, only the newest
    O(keep_previous_count) remain after a successful restore. With O(safety_backup) it is also
    dumped into C(<backup_root>/postgresql/safety/) after the swap (it does not move C(latest))."
  - Names are file names in the store's directory, C(safety/<name>) for a safety backup, or
    C(latest), which is the newest backup of the catalog that reads back good (the C(latest)
    link is only compared with it; a difference is reported in RV(notes)). Names that leave
    the directory are refused.
author: cclite.backup contributors (@cclite)
extends_documentation_fragment:
  - cclite.backup.postgresql
  - cclite.backup.catalog
  - cclite.backup.catalog.ENCRYPTION
  - cclite.backup.catalog.COMPRESSION
  - cclite.backup.catalog.PROGRESS
  - cclite.backup.drill
  - cclite.backup.attributes
attributes:
  check_mode:
    support: full
    details:
      - Resolves the name, reads and checks the whole file, and connects to the server.
        Nothing is changed, and O(confirm) is not required.
  diff_mode:
    support: none
  idempotent:
    support: none
    details:
      - Every run replaces the database.
options:
  database:
    description: Database to restore into; it is created when it does not exist.
    type: str
    required: true
  name:
    description:
      - Backup to restore, as the guide's C(--postgres FILE) -
        C(postgres_backup_20251226_020000.sql.gz), C(latest.sql.gz), or V(latest).
      - A directory-format backup (C(postgres_backup_20251226_020000.dir), C(latest.dir)) is
        loaded with C(pg_restore -j) O(jobs) into the staging database, through the same steps;
        it needs O(mode=host) without O(run_as).
    type: str
    default: latest
  jobs:
    description: C(pg_restore) processes for a directory-format backup.
    type: int
    default: 2
  confirm:
    description:
      - Must be V(true) for the restore to run; the restore replaces the database.
    type: bool
    default: false
  safety_backup:
    description:
      - Also dump the replaced database into the safety directory after the swap, so that the
        restore can be rolled back with C(safety/<name>) even once the replaced database is
        dropped (or from another server). It adds the time of a C(pg_dump) with compression of
        the old database to the restore.
      - Off by default - the kept database (O(keep_previous)) is the way back. With both off,
        nothing of the replaced data remains once the restore succeeded.
    type: bool
    default: false
  keep_previous:
    description:
      - Keep the replaced database, renamed to C(<database>__pre_restore_<stamp>) with
        connections disabled, instead of dropping it once the restore succeeded. It needs the
        disk space of the old database until it is dropped (see O(keep_previous_count)). It is
        kept whatever this says when a step after the swap fails.
    type: bool
    default: true
  keep_previous_count:
    description:
      - With O(keep_previous), how many replaced databases of the same database to keep,
        the newest (the one this restore replaced counts). After a successful restore, older
        C(<database>__pre_restore_<stamp>) databases are dropped, oldest first, and named in
        RV(dropped_previous); nothing is dropped when the restore fails.
    type: int
    default: 1
notes:
  - Applications connected to the database are disconnected at the swap; stop them first, as
    the guide's disaster-recovery scenarios say.
  - The new database gets the owner, encoding, locale and privileges of the one it replaces.
    Database-level settings (C(ALTER DATABASE ... SET)) are not part of a plain dump and are not
    carried over.
seealso:
  - module: cclite.backup.postgresql_backup
  - module: cclite.backup.postgresql_backup_info
"""

EXAMPLES = r"""
- name: Restore a backup from before the incident (point-in-time recovery, scenario 3)
  cclite.backup.postgresql_restore:
    database: operator_demo
    name: postgres_backup_20251225_020000.sql.gz
    confirm: true

- name: Roll back to what the last restore replaced
  cclite.backup.postgresql_restore:
    database: operator_demo
    name: safety/postgres_safety_operator_demo_20251226_101500.sql.gz
    confirm: true
"""

RETURN = r"""
restore:
  description: The restore's own figures (RV(restored_from) describes the backup).
  returned: success
  type: dict
  contains:
    size:
      description: Bytes of data loaded into the target (the backup's content, decompressed).
      type: int
    duration:
      description: Seconds the restore took, from choosing the backup to the end.
      type: float
restored_from:
  description: The backup restored (name, path, created, size, sha256, legacy).
  returned: always
  type: dict
database:
  description: The database restored into.
  returned: always
  type: str
server_version:
  description: Version of the server.
  returned: always
  type: str
safety_backup:
  description: The safety backup of the data that was replaced (path, name, size, sha256); null when there was nothing to save.
  returned: always
  type: dict
previous_database:
  description: Name of the kept old database, with O(keep_previous) or when a step after the swap failed.
  returned: always
  type: str
dropped_previous:
  description: The replaced databases of earlier restores dropped to keep O(keep_previous_count), oldest first.
  returned: success
  type: list
  elements: str
rollback:
  description:
    - Where the replaced data is and how to go back to it (C(where), C(how), and C(artifact) for
      a safety backup); null when nothing of it was kept.
  returned: success
  type: dict
notes:
  description: What is worth knowing, e.g. that the C(latest) link pointed elsewhere than the newest good backup.
  returned: always
  type: list
  elements: str
tables:
  description: Row count of every table after the restore (null in check mode).
  returned: always
  type: dict
drill:
  description: >-
    With O(drill), also on failure: C(store), C(set), C(backup), C(server) (the drill target), C(ran), C(passed),
    C(started), C(finished), C(duration_seconds), C(restore_seconds) (the measured restore), C(compared), C(problems), C(why).
  returned: with O(drill)
  type: dict
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.cclite.backup.plugins.module_utils._core import _module, _module_restore
from ansible_collections.cclite.backup.plugins.module_utils._engines.postgresql import _client as pg
from ansible_collections.cclite.backup.plugins.module_utils._engines.postgresql import _drill as pg_drill
from ansible_collections.cclite.backup.plugins.module_utils._engines.postgresql import _engine as pg_ops


def main() -> None:
    argument_spec = dict(
        database=dict(type="str", required=True),
        name=dict(type="str", default="latest"),
        confirm=dict(type="bool", default=False),
        safety_backup=dict(type="bool", default=False),
        keep_previous=dict(type="bool", default=True),
        keep_previous_count=dict(type="int", default=1),
        jobs=dict(type="int", default=2),
    )
    argument_spec.update(pg.connection_argument_spec())
    argument_spec.update(_module.catalog_argument_spec())
    argument_spec.update(_module.encryption_argument_spec())
    argument_spec.update(_module.compression_argument_spec())
    argument_spec.update(_module.progress_argument_spec())
    argument_spec.update(_module_restore.drill_argument_spec())
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)

    def action() -> dict:
        p = module.params
        spec = _module_restore.spec_from(p, pg_ops.catalog(p["backup_root"], p["series"]), safety_series=p["database"])
        if p["drill"]:
            return _module_restore.drill(
                module, "postgresql", p["container"], pg.connection_argument_spec(),
                lambda kept: (spec, pg_drill.Drill(pg.connection_from(p), p["database"], spec, pg.connection_from(kept) if kept else None)),
                host_mode=p["mode"] == "host", scratch=lambda: pg_drill.HostScratch(pg.connection_from(p)),
            )
        request = pg_ops.RestoreRequest(conn=pg.connection_from(p), database=p["database"], spec=spec, jobs=p["jobs"],
                                        keep_previous_count=p["keep_previous_count"])
        return pg_ops.Restore(request).run(module.check_mode)

    _module.run(module, action, ("postgresql", "restore", module.params["database"]))


if __name__ == "__main__":
    main()
