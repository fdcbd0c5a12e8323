#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) cclite.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: backup_set_info
short_description: List the backup sets of a host and pick the one to restore
version_added: 0.1.0
description:
  - A backup set is the backups of the stores that one C(backup.yml) run made, whose manifests
    share the run's C(run_id). Backups without a run id (the guide's scripts, adopted or not,
    and manifests written before run ids existed) are grouped by the time stamps of their names;
    sorted oldest first, a set starts at the oldest backup not yet in a set and takes, of each
    other store, the oldest backup stamped within O(window_minutes) of that first one; a second
    backup of a store already in the set starts the next set. Such a set's id is its first
    backup's stamp.
  - A set is complete when every store in O(stores) has a backup in it whose status is C(good)
    (its manifest vouches for it; with O(verify=full) its data was read back too).
  - Lists the sets newest first and selects the one to restore - the newest complete set
    (O(set=latest)), the set named by its run id, or the newest complete set at or before
    O(before). Fails, naming the problem and the fix, when there is no such set, unless
    O(select=false).
  - Reads the local catalog (O(source=local)) or the copies on S3 (O(source=s3)); either way
    only the backups of one host (O(from_host), else O(host)) count. Never changes anything.
author: cclite.backup contributors (@cclite)
extends_documentation_fragment:
  - cclite.backup.s3
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
    description: Root of the local backup tree (O(source=local)).
    type: path
    default: /var/backups/cc-lite
  stores:
    description: The stores a complete set holds.
    type: list
    elements: str
    choices: [postgresql, redis, qdrant]
    default: [postgresql, redis, qdrant]
  set:
    description:
      - C(latest) selects the newest complete set; a run id (C(YYYYMMDD_HHMMSS), as C(list.yml)
        shows) selects that set, which must be complete - else the module fails naming the set
        and what each missing store lacks.
      - With O(purpose=verify) also C(random) - a random complete set older than the newest
        complete one (the monthly restore drill of an older set).
    type: str
    default: latest
  purpose:
    description:
      - What the set is selected for, which only changes the option names and fixes the messages
        give (C(restore_set) or C(verify_set)) and whether O(set=random) is allowed (C(verify)).
    type: str
    choices: [restore, verify]
    default: restore
  before:
    description:
      - With O(set=latest), select the newest complete set at or before this time,
        C(YYYY-MM-DD HH:MM[:SS]) in the managed host's local time. A set's time is its run id
        (the start of the run), or its first backup's stamp.
    type: str
    default: ""
  from_host:
    description:
      - Whose backups to read (the inventory name recorded in the manifests), for restoring
        another host's set on this one. Empty reads O(host)'s.
    type: str
    default: ""
  source:
    description: Read the local catalog, or the copies on S3 (the S3 options then apply).
    type: str
    choices: [local, s3]
    default: local
  window_minutes:
    description: How far apart the stamps of backups without a run id may be to form one set.
    type: int
    default: 30
  verify:
    description:
      - C(quick) trusts a backup whose manifest is readable and whose size matches it (on S3,
        also S3's checksum); C(full) also reads each local backup back against its sha256.
    type: str
    choices: [quick, full]
    default: quick
  select:
    description: Select a set (and fail when there is none); C(false) only lists the sets.
    type: bool
    default: true
  redis_method:
    description: Which Redis backups belong to sets, C(rdb) snapshots or C(logical) dumps.
    type: str
    choices: [rdb, logical]
    default: rdb
  bucket:
    description: The bucket, with O(source=s3).
    type: str
    required: false
    default: ""
notes:
  - The S3 option O(host) names this host (the inventory name); with O(host_dir) the host whose
    copies are read (O(from_host) or O(host)) is part of the keys.
seealso:
  - module: cclite.backup.s3_backup_fetch
"""

EXAMPLES = r"""
- name: Pick the newest complete set
  cclite.backup.backup_set_info:
    backup_root: /var/backups/cc-lite
    host: "{{ inventory_hostname }}"
  register: backup_set

- name: Pick the set of host db1 on S3 from before an incident
  cclite.backup.backup_set_info:
    source: s3
    bucket: my-backups
    host: "{{ inventory_hostname }}"
    from_host: db1
    before: "2026-12-01 03:00"
  register: backup_set
"""

RETURN = r"""
sets:
  description: The sets, newest first.
  returned: always
  type: list
  elements: dict
  contains:
    run_id: {description: "The run id, or for a set grouped by time its first backup's stamp (YYYYMMDD_HHMMSS).", type: str, returned: always}
    time: {description: The set's time (ISO 8601)., type: str, returned: always}
    host: {description: The host its manifests name (null for backups without a run id)., type: str, returned: always}
    legacy: {description: Grouped by time stamps (no run id)., type: bool, returned: always}
    complete: {description: Every store of O(stores) has a good backup in the set., type: bool, returned: always}
    missing: {description: "What keeps it from being complete, one phrase per store.", type: list, elements: str, returned: always}
    stores:
      description: "Per store: C(file), C(status) (good, bad, legacy, incomplete), C(problem), C(time)."
      type: dict
      returned: always
selected:
  description: The set to restore (same shape as an item of RV(sets)); null with O(select=false).
  returned: always
  type: dict
files:
  description: The selected set's file per store, for C(restore_<store>_file); empty with O(select=false).
  returned: always
  type: dict
notes:
  description: Things to know, e.g. that the newest backups of the stores belong to different sets.
  returned: always
  type: list
  elements: str
"""

import datetime

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.cclite.backup.plugins.module_utils._core import _module, _sets
from ansible_collections.cclite.backup.plugins.module_utils._core._catalog import POSTGRESQL, QDRANT, Catalog
from ansible_collections.cclite.backup.plugins.module_utils._core._errors import ConfigError
from ansible_collections.cclite.backup.plugins.module_utils._engines.redis import _engine as rd_ops
from ansible_collections.cclite.backup.plugins.module_utils._offsite import _listing, _remote
from ansible_collections.cclite.backup.plugins.module_utils._offsite import _s3 as s3


SET_STORES = ("postgresql", "redis", "qdrant")  # the stores of a set (not the WAL-based postgresql_base)


def main() -> None:
    argument_spec = s3.connection_argument_spec()
    argument_spec["bucket"] = dict(type="str", required=False, default="")
    argument_spec.update(
        backup_root=dict(type="path", default="/var/backups/cc-lite"),
        stores=dict(type="list", elements="str", choices=list(SET_STORES), default=list(SET_STORES)),
        set=dict(type="str", default="latest"),
        before=dict(type="str", default=""),
        from_host=dict(type="str", default=""),
        source=dict(type="str", choices=["local", "s3"], default="local"),
        window_minutes=dict(type="int", default=30),
        verify=dict(type="str", choices=["quick", "full"], default="quick"),
        select=dict(type="bool", default=True),
        redis_method=dict(type="str", choices=["rdb", "logical"], default="rdb"),
        purpose=dict(type="str", choices=["restore", "verify"], default="restore"),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)

    def action() -> dict:
        p = module.params
        whose = (p["from_host"] or p["host"] or "").strip()
        if p["window_minutes"] < 1:
            raise ConfigError("window_minutes is %d: give at least 1" % p["window_minutes"])
        members: list[_sets.Member] = []
        notes: list[str] = []
        if p["source"] == "s3":
            if not p["bucket"]:
                raise ConfigError("source=s3 needs the bucket: set backup_s3_bucket")
            remote = _remote.Remote(s3.connection_from(dict(p, host=whose)))
            where = remote.conn.url()
            for store in p["stores"]:
                members.extend(_listing.set_members(remote, store))
            others = sum(remote.others.values())
        else:
            catalogs = {"postgresql": Catalog(p["backup_root"], POSTGRESQL), "qdrant": Catalog(p["backup_root"], QDRANT),
                        "redis": rd_ops.catalog(p["backup_root"], p["redis_method"])}
            where = p["backup_root"]
            others = 0
            for store in p["stores"]:
                found, skipped = _sets.local_members(catalogs[store], whose, p["verify"] == "full")
                members.extend(found)
                others += skipped
        if others:
            notes.append("%d backup(s) of other hosts than %s in %s were left out" % (others, whose, where))
        sets = _sets.group(members, datetime.timedelta(minutes=p["window_minutes"]))
        notes.extend(_sets.newest_notes(members, sets, p["stores"]))
        listed = [s.as_dict(p["stores"]) for s in sets]
        selected, files = None, {}
        if p["select"]:
            chosen = _sets.select(sets, p["stores"], p["set"], p["before"], where, p["purpose"])
            notes.extend(chosen.notes)
            selected = chosen.chosen.as_dict(p["stores"])
            files = {store: chosen.chosen.members[store].name for store in p["stores"]}
            msg = "set %s of %s (%s): %s" % (
                selected["run_id"], whose or "this host", selected["time"],
                ", ".join("%s %s" % (k, v) for k, v in sorted(files.items())))
        else:
            msg = "%d set(s) in %s, %d complete" % (len(listed), where, sum(1 for s in listed if s["complete"]))
        return dict(changed=False, sets=listed, selected=selected, files=files, notes=notes, msg=msg)

    _module.run(module, action)


if __name__ == "__main__":
    main()
