#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) cclite.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: postgresql_basebackup
short_description: Take a PostgreSQL base backup for point-in-time recovery
version_added: 0.2.0
description:
  - Streams C(pg_basebackup -D - -Ft -X none --manifest-checksums=SHA256) through the core's
    writer (compression, sha256, read-back, manifest, temp file and rename) into
    C(<backup_root>/postgresql_base/postgres_base_backup_YYYYMMDD_HHMMSS.tar.gz).
  - The WAL the base backup needs is not in it; C(pg_basebackup) waits until the server has
    archived it into C(<backup_root>/postgresql/wal/) (the role's archive_command), so the
    server must archive WAL; on a server that does not archive, this fails.
  - The read-back walks the tar stream and records C(backup_label) (start LSN, timeline) and the
    end LSN from the backup manifest in the catalog manifest; C(pg_verifybackup) checks the
    unpacked files at restore time (PostgreSQL 15's C(pg_verifybackup) reads only plain directories).
  - With O(retention_days), older base backups are deleted (never the newest good one), then
    archived WAL older than the oldest kept base backup's first segment; never WAL a kept base
    backup needs, never a timeline history file.
author: cclite.backup contributors (@cclite)
extends_documentation_fragment:
  - cclite.backup.postgresql
  - cclite.backup.catalog
  - cclite.backup.catalog.COMPRESSION
  - cclite.backup.attributes
attributes:
  check_mode:
    support: none
  diff_mode:
    support: none
  idempotent:
    support: none
    details:
      - Every run makes a new base backup.
options:
  retention_days:
    description: Delete base backups older than this many days (never the newest good one), then the WAL no kept base backup needs.
    type: int
  max_rate:
    description: C(pg_basebackup --max-rate), e.g. C(50M); empty for no limit.
    type: str
    default: ""
"""

EXAMPLES = r"""
- name: Take a base backup
  cclite.backup.postgresql_basebackup:
    backup_root: /srv/backups
    retention_days: 7
"""

RETURN = r"""
artifact:
  description: The base backup written (path, name, size, sha256, created, duration).
  returned: always
  type: dict
source:
  description: What the tar stream holds (start_lsn, end_lsn, timeline, start_time, files).
  returned: always
  type: dict
pruned_wal:
  description: Names of the archived WAL segments deleted by retention.
  returned: always
  type: list
  elements: str
archive:
  description: The recoverable window, the recovery point and the gaps after this run (as C(postgresql_pitr_info)).
  returned: always
  type: dict
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.cclite.backup.plugins.module_utils._core import _module
from ansible_collections.cclite.backup.plugins.module_utils._core import _ops
from ansible_collections.cclite.backup.plugins.module_utils._core._artifact import utcnow
from ansible_collections.cclite.backup.plugins.module_utils._engines.postgresql import _client as pg
from ansible_collections.cclite.backup.plugins.module_utils._engines.postgresql import _pitr


def main() -> None:
    argument_spec = dict(retention_days=dict(type="int"), max_rate=dict(type="str", default=""))
    argument_spec.update(pg.connection_argument_spec())
    argument_spec.update(_module.catalog_argument_spec())
    argument_spec.update(_module.compression_argument_spec())
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=False)

    def action() -> dict:
        p = module.params
        catalog = _pitr.base_catalog(p["backup_root"])
        spec = _ops.BackupSpec(
            catalog=catalog, compression=_module.compression_from(p), fmt=_pitr.FORMAT, content=_pitr.TarScan,
            content_stats=True, retention_days=_module.retention_days_from(p), lock_timeout=p["lock_timeout"],
            file_mode=_module.file_mode_from(p),
        )
        conn = pg.connection_from(p)
        versions = {"server": pg.server_version(conn), "pg_basebackup": pg.tool_version(conn, "pg_basebackup")}
        producer = _pitr.BaseProducer(conn, "cclite.backup %s" % utcnow().strftime("%Y%m%d_%H%M%S"), p["max_rate"])
        result = _ops.make_backup(spec, producer, versions)
        kept = [e for e in catalog.entries() if not e.manifest_error]
        result["pruned_wal"] = _pitr.prune_wal(p["backup_root"], _pitr.start_segno(kept[-1]) if kept and p["retention_days"] else None)
        result["archive"] = _pitr.archive_info(p["backup_root"])
        result["msg"] = "wrote %s: a base backup from %s (WAL from %s)" % (
            result["artifact"]["path"], result["source"].get("start_lsn"), result["source"].get("start_segment"))
        return dict(changed=True, **result)

    _module.run(module, action)


if __name__ == "__main__":
    main()
