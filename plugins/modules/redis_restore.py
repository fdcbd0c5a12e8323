#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) cclite.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: redis_restore
short_description: Restore Redis from the backup catalog, safely
version_added: 0.1.0
description:
  - Restores a backup made by M(cclite.backup.redis_backup) (or an RDB from the guide's
    scripts) into the running Redis, replacing all of its data.
  - "Before any change: refuse without O(confirm); read the whole file (stream, sha256 against
    the manifest, and C(redis-check-rdb) for an RDB, or the full structure of a logical dump),
    so a corrupt or truncated file stops here; check that the server can read the RDB format;
    then take a safety backup of the current data into C(<backup_root>/redis/safety/) with the
    same method (it does not move C(latest))."
  - "RDB (O(method=rdb)): the new files are written beside the old ones first (owned like
    Redis' own); then Redis is stopped (C(docker stop), or O(service) through systemd or the
    init script), the RDB is put in place (C(docker cp -a) into the container), Redis is started
    (C(docker start), or the service), the module waits until C(INFO persistence) says
    C(loading:0), and compares the key count of every database with the manifest and the
    total with what C(redis-check-rdb) counted in the file."
  - "With C(appendonly yes), Redis loads the AOF and ignores the RDB. The module then installs
    the backup as the AOF's base as well (Redis 7: a new C(appendonly.aof.N.base.rdb), an empty
    incr file and a manifest that lists only them, in C(appenddirname); before Redis 7: the
    backup replaces C(appendonly.aof), which may be a plain RDB), starts Redis, and removes the
    replaced AOF files once the data has loaded. The result's C(aof.action) says what was done."
  - "Logical (O(method=logical)): C(FLUSHALL) (see O(replace_all)), then C(RESTORE key ttl
    payload ABSTTL) of every key, pipelined, so expiries stay absolute; keys whose expiry has
    passed are not created. The key counts are compared with the dump's."
  - Names are file names in the store's directory, C(safety/<name>) for a safety backup, or
    C(latest), which is the newest backup of the catalog that reads back good (the C(latest)
    link is only compared with it; a difference is reported in RV(notes)). Names that leave the
    directory are refused.
  - A failure says which step failed and what state the server is in; before Redis is stopped
    (or, for O(method=logical), before FLUSHALL) nothing was changed.
author: cclite.backup contributors (@cclite)
extends_documentation_fragment:
  - cclite.backup.redis
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
      - Resolves the name, reads and checks the whole file, connects to the server and finds
        its files. Nothing is changed, and O(confirm) is not required.
  diff_mode:
    support: none
  idempotent:
    support: none
    details:
      - Every run replaces the data.
options:
  name:
    description:
      - Backup to restore, as the guide's C(--redis FILE) - C(redis_backup_20251226_020000.rdb.gz),
        C(latest.rdb.gz), V(latest), or C(safety/<name>).
    type: str
    default: latest
  method:
    description: Which kind of backup O(name) is - an RDB snapshot or a logical dump.
    type: str
    choices: [rdb, logical]
    default: rdb
  confirm:
    description: Must be V(true) for the restore to run; the restore replaces all of Redis' data.
    type: bool
    default: false
  safety_backup:
    description: Back up the current data before replacing it (strongly advised).
    type: bool
    default: true
  service:
    description:
      - The service that runs Redis on the host, for O(mode=host) RDB restores (the guide's
        C(redis_backup_service)); it is stopped and started through O(service_manager).
    type: str
    default: redis-server
  service_manager:
    description:
      - How O(service) is stopped and started. V(auto) uses C(systemctl) when systemd runs,
        else C(service) (the init script).
    type: str
    choices: [auto, systemd, sysv]
    default: auto
  stop_timeout:
    description: Seconds Redis may take to stop (it may save on shutdown).
    type: int
    default: 120
  start_timeout:
    description: Seconds Redis may take to start and load the data.
    type: int
    default: 300
  replace_all:
    description:
      - For O(method=logical), delete every key first (C(FLUSHALL)) so the data is exactly the
        dump's. V(false) merges - keys of the dump replace keys of the same name, others stay -
        and the key counts are not compared.
    type: bool
    default: true
  bgsave_timeout:
    description: Seconds to wait for the safety backup's save.
    type: int
    default: 3600
  pause_writes_ms:
    description: Longest write pause while the safety backup counts keys (see M(cclite.backup.redis_backup)).
    type: int
    default: 1000
notes:
  - An RDB restore must run where Redis' files are (O(mode=docker), or O(mode=host) on the Redis
    host, as root - C(become) - so the files get Redis' owner); for a server elsewhere use
    O(method=logical).
  - Redis must be running when the restore starts (for the safety backup and to learn where its
    files are); the guide's disaster-recovery scenario starts the containers first.
  - Clients lose their connection while Redis restarts; stop the application first, as the
    guide's scenarios do.
seealso:
  - module: cclite.backup.redis_backup
  - module: cclite.backup.redis_backup_info
"""

EXAMPLES = r"""
- name: Restore a backup from before the incident into cc-lite-redis
  cclite.backup.redis_restore:
    name: redis_backup_20251225_020000.rdb.gz
    login_password: "{{ vault_redis_password }}"
    confirm: true

- name: Restore the latest backup into Redis run by systemd on this host
  cclite.backup.redis_restore:
    mode: host
    service: redis-server
    confirm: true
  become: true

- name: Roll back to what the last restore replaced
  cclite.backup.redis_restore:
    name: safety/redis_safety_20251226_101500.rdb.gz
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
rollback:
  description:
    - Where the replaced data is and how to go back to it (C(where), C(how), C(artifact) - the
      safety backup); null without a safety backup.
  returned: success
  type: dict
notes:
  description: What is worth knowing, e.g. that the C(latest) link pointed elsewhere than the newest good backup.
  returned: always
  type: list
  elements: str
restored_from:
  description: The backup restored (name, path, created, size, sha256, legacy).
  returned: always
  type: dict
method:
  description: V(rdb) or V(logical).
  returned: always
  type: str
server_version:
  description: Version of the server.
  returned: always
  type: str
safety_backup:
  description: The safety backup of the data that was replaced (path, name, size, sha256); null when not
    taken.
  returned: always
  type: dict
databases:
  description: Key count and keys with a TTL per database after the restore (null in check mode).
  returned: always
  type: dict
aof:
  description: For RDB restores, whether C(appendonly) is on, what was done about it, and the replaced
    AOF files removed; null for logical restores.
  returned: always
  type: dict
  contains:
    enabled:
      description: Whether the server runs with C(appendonly yes).
      returned: always
      type: bool
    action:
      description: What the restore did so the AOF does not shadow the RDB.
      returned: when enabled
      type: str
    removed:
      description: Replaced AOF files that were removed.
      returned: when enabled
      type: list
      elements: str
duplicates:
  description: Logical restores only - keys the dump held twice (SCAN may return a key twice).
  returned: when O(method=logical)
  type: int
actions:
  description: Every step taken, in order, one sentence each.
  returned: always
  type: list
  elements: str
drill:
  description: >-
    With O(drill), also on failure: C(store), C(set), C(backup), C(server) (the drill target), C(ran), C(passed),
    C(started), C(finished), C(duration_seconds), C(restore_seconds) (the measured restore), C(compared), C(problems), C(why).
  returned: with O(drill)
  type: dict
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.cclite.backup.plugins.module_utils._core import _module, _module_restore
from ansible_collections.cclite.backup.plugins.module_utils._engines.redis import _client as rd
from ansible_collections.cclite.backup.plugins.module_utils._engines.redis import _drill as rd_drill
from ansible_collections.cclite.backup.plugins.module_utils._engines.redis import _engine as rd_ops
from ansible_collections.cclite.backup.plugins.module_utils._engines.redis import _restore as rd_restore


def main() -> None:
    argument_spec = dict(
        name=dict(type="str", default="latest"),
        method=dict(type="str", default="rdb", choices=["rdb", "logical"]),
        confirm=dict(type="bool", default=False),
        safety_backup=dict(type="bool", default=True),
        service=dict(type="str", default="redis-server"),
        service_manager=dict(type="str", default="auto", choices=["auto", "systemd", "sysv"]),
        stop_timeout=dict(type="int", default=120),
        start_timeout=dict(type="int", default=300),
        replace_all=dict(type="bool", default=True),
        bgsave_timeout=dict(type="int", default=3600),
        pause_writes_ms=dict(type="int", default=1000),
    )
    argument_spec.update(rd.connection_argument_spec())
    argument_spec.update(_module.catalog_argument_spec())
    argument_spec.update(_module.encryption_argument_spec())
    argument_spec.update(_module.compression_argument_spec())
    argument_spec.update(_module.progress_argument_spec())
    argument_spec.update(_module_restore.drill_argument_spec())
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)

    def action() -> dict:
        p = module.params
        request = rd_restore.RestoreRequest(
            conn=rd.connection_from(p),
            spec=_module_restore.spec_from(p, rd_ops.catalog(p["backup_root"], p["method"], p["series"])),
            method=p["method"],
            service=p["service"],
            service_manager=p["service_manager"],
            start_timeout=p["start_timeout"],
            stop_timeout=p["stop_timeout"],
            replace_all=p["replace_all"],
            settings=rd_ops.Settings(p["method"], "file", p["pause_writes_ms"], 3, p["bgsave_timeout"]),
        )
        if p["drill"]:
            scratch = rd_drill.HostScratch(request.conn)
            return _module_restore.drill(
                module, "redis", p["container"], rd.connection_argument_spec(),
                lambda kept: (request.spec, rd_drill.Drill(request, rd.connection_from(kept) if kept else None, scratch)),
                host_mode=p["mode"] == "host", scratch=lambda: scratch,
            )
        return rd_restore.Restore(request).run(module.check_mode)

    _module.run(module, action, ("redis", "restore", ""))


if __name__ == "__main__":
    main()
