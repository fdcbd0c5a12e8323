#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) cclite.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: postgresql_backup
short_description: Back up a PostgreSQL database into the backup catalog
version_added: 0.1.0
description:
  - Dumps one database with C(pg_dump) (plain SQL, as the guide's C(pg_dump | gzip)) and
    streams it through compression into
    C(<backup_root>/postgresql/postgres_backup_YYYYMMDD_HHMMSS.sql.gz), with constant memory.
  - The dump and the row count of every table come from one snapshot (an exported
    REPEATABLE READ snapshot that C(pg_dump --snapshot) shares), so the counts recorded in the
    manifest describe exactly what the dump holds, even on a busy server.
  - The exit status of every stage is checked. The artifact is written to a temp file, read
    back (stream integrity, sha256, pg_dump's closing line) and only then renamed into place,
    next to a JSON manifest (sizes, sha256, times, versions, row counts). C(latest.sql.gz)
    moves only after that.
  - With O(retention_days), older backups are deleted afterwards, never the newest one that
    verifies as good.
  - Two runs on the same store and host never overlap (see O(lock_timeout)).
  - With O(format=directory), C(pg_dump -Fd -j) writes one gzip-compressed file per table
    with O(jobs) processes into a hidden temp directory; every file is then read once (sha256,
    gzip stream, the table's end line and row count), the manifest lists every file with its
    sha256, and the directory is renamed into place as one backup,
    C(postgres_backup_YYYYMMDD_HHMMSS.dir), with C(latest.dir) moved only after that.
author: cclite.backup contributors (@cclite)
extends_documentation_fragment:
  - cclite.backup.postgresql
  - cclite.backup.catalog
  - cclite.backup.catalog.ENCRYPTION
  - cclite.backup.catalog.COMPRESSION
  - cclite.backup.catalog.BACKUP_SET
  - cclite.backup.catalog.RETENTION
  - cclite.backup.catalog.PROGRESS
  - cclite.backup.attributes
attributes:
  check_mode:
    support: full
    details:
      - Connects to the server, checks the database and the catalog, and returns the path the
        backup would get and what retention would delete. Nothing is written.
  diff_mode:
    support: none
  idempotent:
    support: none
    details:
      - Every run makes a new backup, and reports C(changed) because of it.
options:
  database:
    description: Database to back up.
    type: str
    required: true
  format:
    description:
      - V(plain) is the guide's C(.sql.gz) (one SQL stream, one process).
      - V(directory) is C(pg_dump -Fd -j) O(jobs), restored with C(pg_restore -j), for big
        databases. Compression is pg_dump's gzip at O(compression_level) (O(compression) must be
        V(gzip) or V(none)). Needs O(mode=host) without O(run_as) (pg_dump writes the directory
        itself). O(count_rows=dump) counts the lines of each table's data file.
    type: str
    choices: [plain, directory]
    default: plain
  jobs:
    description: C(pg_dump) processes for O(format=directory) (each takes a connection).
    type: int
    default: 2
  count_rows:
    description:
      - How the row count of every table is taken for the manifest; verification and restore
        compare against these counts.
      - V(dump) counts the rows in the dump itself as it is written (the lines of each table's
        C(COPY) block), at almost no cost. The counts are exactly what the dump holds, so a
        table left out with C(--exclude-table-data) is not counted. Needs C(COPY) data, so
        not with C(--inserts) and its kin.
      - V(snapshot) runs C(count(*)) on every table in the dump's exported snapshot while the
        dump runs, an independent count from the server at the cost of a scan of every table.
      - V(none) records no counts.
    type: str
    choices: [dump, snapshot, none]
    default: dump
  dump_options:
    description:
      - Extra C(pg_dump) options, for example C(--exclude-table-data=audit_log). The format
        stays plain SQL.
      - Options that would move or reshape the output are refused before anything runs, with
        the reason - C(-f)/C(--file), C(-F)/C(--format), C(-Z)/C(--compress), C(-j)/C(--jobs),
        C(-d)/C(--dbname), C(-h)/C(--host), C(-p)/C(--port), C(-U)/C(--username),
        C(-W)/C(--password), C(--snapshot), C(--help), C(--version) and bare arguments (a
        database name). Abbreviated long options (C(--fil=x)) and bundled short ones (C(-vf x))
        are read as C(pg_dump) reads them.
    type: list
    elements: str
    default: []
  verify:
    description:
      - Check the new artifact before it is put in place - the bytes written to the file (the
        ones whose sha256 goes to the manifest) are decompressed on their way, in parallel
        with the dump, and must end with pg_dump's closing line. Reading the file again once
        written would read the page cache, which proves nothing more.
    type: bool
    default: true
  retention_days:
    description:
      - After a successful backup, delete the backups of this series older than this many
        days, except the newest one that verifies as good. Omit to keep everything.
      - At least V(1); V(0) or less is refused before anything is done.
    type: int
notes:
  - The managed host needs the C(docker) CLI (O(mode=docker)) or the PostgreSQL client tools
    (O(mode=host)), and C(gzip) (or C(pigz)) or C(zstd).
seealso:
  - module: cclite.backup.postgresql_backup_info
  - module: cclite.backup.postgresql_restore
"""

EXAMPLES = r"""
- name: Back up operator_demo from the cc-lite-postgres container
  cclite.backup.postgresql_backup:
    database: operator_demo
    backup_root: /var/backups/cc-lite
    retention_days: 30

- name: Back up a server elsewhere on the network, with zstd
  cclite.backup.postgresql_backup:
    mode: host
    login_host: db.internal
    login_user: backup
    login_password: "{{ vault_pg_backup_password }}"
    database: operator_demo
    compression: zstd
"""

RETURN = r"""
artifact:
  description: The backup made (in check mode, the one that would be made; size and sha256 are null).
  returned: always
  type: dict
  contains:
    path:
      description: Absolute path of the artifact.
      type: str
      sample: /var/backups/cc-lite/postgresql/postgres_backup_20251226_020000.sql.gz
      returned: always
    name:
      description: File name.
      type: str
      returned: always
    size:
      description: Size in bytes of the compressed artifact.
      type: int
      returned: always
    sha256:
      description: SHA-256 of the artifact.
      type: str
      returned: always
    format:
      description: Dump format.
      type: str
      sample: plain
      returned: always
    compression:
      description: Compression algorithm.
      type: str
      sample: gzip
      returned: always
    encrypted:
      description: Whether the artifact is encrypted at rest (option O(encrypt)).
      type: bool
      returned: always
    created:
      description: When the artifact was complete (ISO 8601).
      type: str
      returned: always
    duration:
      description: Seconds the dump took.
      type: float
      returned: always
    versions:
      description: Server and pg_dump versions.
      type: dict
      returned: always
manifest:
  description: Path of the manifest written next to the artifact.
  returned: always
  type: str
source:
  description: Statistics of the database in the dump's snapshot.
  returned: always
  type: dict
  contains:
    tables:
      description: Row count of every table (schema.table).
      type: dict
      returned: always
    table_count:
      description: Number of tables.
      type: int
      returned: always
    total_rows:
      description: Sum of all row counts.
      type: int
      returned: always
latest:
  description: Path of the C(latest) link, moved to this backup.
  returned: always
  type: str
retention:
  description: What retention did (null without O(retention_days)).
  returned: always
  type: dict
  contains:
    deleted:
      description: Paths deleted (in check mode, that would be deleted).
      type: list
      elements: str
      returned: always
    protected:
      description: The newest good backup, kept whatever its age.
      type: str
      returned: always
    reason:
      description: A sentence on what was kept and why.
      type: str
      returned: always
    generations:
      description: Backups older than the retention in days kept by O(retention_keep), each with the rules that keep it.
      type: dict
      returned: always
      sample: {"postgres_backup_20251201_020000.sql.gz": ["monthly 2025-12"]}
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.cclite.backup.plugins.module_utils._core import _module
from ansible_collections.cclite.backup.plugins.module_utils._core import _ops
from ansible_collections.cclite.backup.plugins.module_utils._core import _retention
from ansible_collections.cclite.backup.plugins.module_utils._engines.postgresql import _client as pg
from ansible_collections.cclite.backup.plugins.module_utils._engines.postgresql import _engine as pg_ops


def main() -> None:
    argument_spec = dict(
        database=dict(type="str", required=True),
        count_rows=dict(type="str", default="dump", choices=["dump", "snapshot", "none"]),
        format=dict(type="str", default="plain", choices=["plain", "directory"]),
        jobs=dict(type="int", default=2),
        dump_options=dict(type="list", elements="str", default=[]),
        verify=dict(type="bool", default=True),
        retention_days=dict(type="int"),
    )
    argument_spec.update(pg.connection_argument_spec())
    argument_spec.update(_module.catalog_argument_spec())
    argument_spec.update(_module.encryption_argument_spec())
    argument_spec.update(_module.retention_keep_argument_spec())
    argument_spec.update(_module.compression_argument_spec())
    argument_spec.update(_module.progress_argument_spec())
    argument_spec.update(_module.set_argument_spec())
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)

    def action() -> dict:
        p = module.params
        retention_days = _module.retention_days_from(p)
        content, content_stats = pg_ops.content_for(p["count_rows"], p["dump_options"])
        spec = _ops.BackupSpec(
            catalog=pg_ops.catalog(p["backup_root"], p["series"]),
            compression=_module.compression_from(p),
            fmt=pg_ops.FORMAT,
            content=content,
            content_stats=content_stats,
            database=p["database"],
            retention_days=retention_days,
            retention_keep=_retention.keep_from(p),
            verify_after=p["verify"],
            lock_timeout=p["lock_timeout"],
            file_mode=_module.file_mode_from(p),
            encryption=_module.encryption_from(p),
            **_module.set_from(p),
        )
        request = pg_ops.BackupRequest(pg.connection_from(p), p["database"], spec, p["dump_options"], p["count_rows"],
                                       p["format"], p["jobs"])
        result = pg_ops.backup(request, module.check_mode)
        verb = "would write" if module.check_mode else "wrote"
        result["msg"] = "%s %s: a new backup of %s" % (verb, result["artifact"]["path"], p["database"])
        return dict(changed=True, **result)

    _module.run(module, action, ("postgresql", "backup", module.params["database"]))


if __name__ == "__main__":
    main()
