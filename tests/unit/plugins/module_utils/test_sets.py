# -*- coding: utf-8 -*-
# Copyright (c) cclite.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Backup sets on real catalogs: run ids in manifests, grouping (legacy window too), which set a restore takes."""

from __future__ import annotations

import datetime
import gzip
import hashlib
import os
import random

import pytest

from ansible_collections.cclite.backup.plugins.module_utils._core import _manifest, _sets
from ansible_collections.cclite.backup.plugins.module_utils._core._artifact import Compression, Written
from ansible_collections.cclite.backup.plugins.module_utils._core._catalog import POSTGRESQL, QDRANT, REDIS, Catalog
from ansible_collections.cclite.backup.plugins.module_utils._core._errors import ConfigError

STORES = ("postgresql", "redis", "qdrant")
LAYOUTS = {"postgresql": POSTGRESQL, "redis": REDIS, "qdrant": QDRANT}


def at(text: str) -> datetime.datetime:
    return datetime.datetime.strptime(text, "%Y%m%d_%H%M%S").astimezone()


def put(root: str, store: str, stamp: str, run_id: str | None = "", host: str = "db1", manifest: bool = True, data: bytes = b"") -> str:
    """A backup of ``store`` stamped ``stamp``; ``run_id`` None: a legacy file (no manifest)."""
    catalog = Catalog(root, LAYOUTS[store])
    catalog.ensure()
    path = os.path.join(catalog.directory, catalog.file_name(at(stamp), ".gz"))
    body = gzip.compress(data or ("%s %s\n" % (store, stamp)).encode() * 50)
    with open(path, "wb") as handle:
        handle.write(body)
    if manifest and run_id is not None:
        written = Written(path, len(body), hashlib.sha256(body).hexdigest(), at(stamp), at(stamp))
        _manifest.write(path, _manifest.build(store, written, Compression("gzip", 6, 1), fmt="plain", host=host, run_id=run_id))
    return path


def sets_of(root: str, host: str = "db1", stores: tuple[str, ...] = STORES, read_data: bool = False):
    members = []
    others = 0
    for store in stores:
        found, skipped = _sets.local_members(Catalog(root, LAYOUTS[store]), host, read_data)
        members.extend(found)
        others += skipped
    return members, _sets.group(members), others


def test_manifest_records_run_id_and_host(tmp_path):
    path = put(str(tmp_path), "redis", "20261201_020005", run_id="20261201_020000", host="db1")
    manifest = _manifest.read(path)
    assert manifest["run_id"] == "20261201_020000"
    assert manifest["host"] == "db1"
    assert _manifest.owner(manifest) == "db1"


def test_old_manifest_without_run_id_stays_valid_and_has_no_owner(tmp_path):
    path = put(str(tmp_path), "redis", "20261201_020005", run_id="", host="machine.example")
    manifest = _manifest.read(path)
    assert "run_id" not in manifest
    assert _manifest.owner(manifest) is None  # its host is the machine's name, not an inventory name


def test_latest_takes_newest_complete_set_not_newest_files(tmp_path):
    root = str(tmp_path)
    for store in STORES:
        put(root, store, "20261201_020010", "20261201_020000")
    # the next night: only PostgreSQL and Redis made it
    put(root, "postgresql", "20261202_020010", "20261202_020000")
    put(root, "redis", "20261202_020020", "20261202_020000")
    members, sets, _others = sets_of(root)
    assert [s.run_id for s in sets] == ["20261202_020000", "20261201_020000"]
    assert [s.complete(STORES) for s in sets] == [False, True]
    chosen = _sets.select(sets, STORES)
    assert chosen.chosen.run_id == "20261201_020000"
    assert {k: m.name for k, m in chosen.chosen.members.items()} == {
        "postgresql": "postgres_backup_20261201_020010.sql.gz",
        "redis": "redis_backup_20261201_020010.rdb.gz",
        "qdrant": "qdrant_backup_20261201_020010.tar.gz",
    }
    assert "20261202_020000" in chosen.notes[0] and "qdrant: no backup in the set" in chosen.notes[0]
    notes = _sets.newest_notes(members, sets, STORES)
    assert len(notes) == 1 and "different sets" in notes[0]
    assert "qdrant qdrant_backup_20261201_020010.tar.gz from set 20261201_020000" in notes[0]
    # for the stores the newer set holds, it is the newest complete one
    assert _sets.select(sets, ["postgresql", "redis"]).chosen.run_id == "20261202_020000"
    assert _sets.newest_notes(members, sets, ["postgresql", "redis"]) == []


def test_named_set_and_unknown_or_incomplete_set(tmp_path):
    root = str(tmp_path)
    for run in ("20261201_020000", "20261202_020000"):
        for store in STORES:
            put(root, store, run[:-2] + "30", run)
    _members, sets, _others = sets_of(root)
    assert _sets.select(sets, STORES, "20261201_020000").chosen.members["redis"].name == "redis_backup_20261201_020030.rdb.gz"
    with pytest.raises(ConfigError) as exc:
        _sets.select(sets, STORES, "20261130_020000", where=root)
    assert "there is no backup set 20261130_020000" in exc.value.msg
    assert "20261202_020000, 20261201_020000" in exc.value.msg and "list.yml" in exc.value.msg
    with pytest.raises(ConfigError) as exc:
        _sets.select(sets, STORES, "yesterday")
    assert "restore_set is 'yesterday'" in exc.value.msg and "YYYYMMDD_HHMMSS" in exc.value.msg
    put(root, "postgresql", "20261203_020030", "20261203_020000")
    _members, sets, _others = sets_of(root)
    with pytest.raises(ConfigError) as exc:
        _sets.select(sets, STORES, "20261203_020000")
    assert "not complete" in exc.value.msg and "redis: no backup in the set" in exc.value.msg
    assert "restore_stores" in exc.value.msg
    with pytest.raises(ConfigError) as exc:  # verify.yml -e verify_set=...: a drill of a partial set fails
        _sets.select(sets, STORES, "20261203_020000", purpose="verify")
    assert exc.value.msg.startswith("backup set 20261203_020000 is not complete for postgresql, redis, qdrant: "
                                    "redis: no backup in the set; qdrant: no backup in the set. ")
    assert "backup_stores" in exc.value.msg and "restore_" not in exc.value.msg
    assert _sets.select(sets, ["postgresql"], "20261203_020000", purpose="verify").chosen.run_id == "20261203_020000"


def test_random_older_complete_set_for_a_drill(tmp_path):
    root = str(tmp_path)
    for run in ("20261201_020000", "20261202_020000", "20261203_020000"):
        for store in STORES:
            put(root, store, run[:-2] + "30", run)
    put(root, "postgresql", "20261204_020030", "20261204_020000")  # newest, not complete
    _members, sets, _others = sets_of(root)
    picked = {_sets.select(sets, STORES, "random", purpose="verify", rng=random.Random(seed)).chosen.run_id for seed in range(30)}
    assert picked == {"20261201_020000", "20261202_020000"}  # never the newest complete set, never an incomplete one
    with pytest.raises(ConfigError) as exc:
        _sets.select(sets, STORES, "random")  # restore_set takes no random
    assert "restore_set is 'random'" in exc.value.msg
    _members, sets, _others = sets_of(str(tmp_path / "empty"))
    with pytest.raises(ConfigError) as exc:
        _sets.select(sets, STORES, "random", purpose="verify")
    assert "verify_set=random needs a complete backup set of postgresql, redis, qdrant older than the newest" in exc.value.msg


def test_before_selects_newest_complete_set_at_or_before(tmp_path):
    root = str(tmp_path)
    for run in ("20261201_020000", "20261202_020000", "20261203_020000"):
        for store in STORES:
            put(root, store, run[:-2] + "30", run)
    _members, sets, _others = sets_of(root)
    assert _sets.select(sets, STORES, before="2026-12-02 02:00").chosen.run_id == "20261202_020000"
    assert _sets.select(sets, STORES, before="2026-12-02 01:59:59").chosen.run_id == "20261201_020000"
    assert _sets.select(sets, STORES, before="2026-12-09 00:00").chosen.run_id == "20261203_020000"
    with pytest.raises(ConfigError) as exc:
        _sets.select(sets, STORES, before="2026-11-30 12:00")
    assert "no complete backup set" in exc.value.msg and "oldest complete set is from 2026-12-01 02:00:00" in exc.value.msg
    for bad in ("02.12.2026 02:00", "2026-12-02", "2026-12-02T02:00"):
        with pytest.raises(ConfigError) as exc:
            _sets.select(sets, STORES, before=bad)
        assert "restore_before is %r" % bad in exc.value.msg and "YYYY-MM-DD HH:MM[:SS]" in exc.value.msg
    with pytest.raises(ConfigError) as exc:
        _sets.select(sets, STORES, "20261201_020000", before="2026-12-02 02:00")
    assert "not both" in exc.value.msg


def test_no_complete_set_names_what_is_missing(tmp_path):
    root = str(tmp_path)
    put(root, "postgresql", "20261201_020030", "20261201_020000")
    bad = put(root, "redis", "20261201_020040", "20261201_020000")
    with open(bad, "ab") as handle:
        handle.write(b"junk")
    _members, sets, _others = sets_of(root)
    with pytest.raises(ConfigError) as exc:
        _sets.select(sets, STORES, where=root)
    msg = exc.value.msg
    assert "no complete backup set of postgresql, redis, qdrant in %s" % root in msg
    assert "redis: redis_backup_20261201_020040.rdb.gz is bad" in msg and "qdrant: no backup in the set" in msg
    assert "Run backup.yml for every store" in msg


def test_full_verify_reads_data_back(tmp_path):
    root = str(tmp_path)
    path = put(root, "redis", "20261201_020040", "20261201_020000")
    size = os.path.getsize(path)
    with open(path, "r+b") as handle:  # same size, other bytes: only a read-back notices
        handle.seek(size - 12)
        handle.write(b"\0" * 4)
    members, _sets_found, _o = sets_of(root, stores=("redis",))
    assert members[0].status == "good"
    members, _sets_found, _o = sets_of(root, stores=("redis",), read_data=True)
    assert members[0].status == "bad"


def test_legacy_backups_group_by_time_window(tmp_path):
    root = str(tmp_path)
    # the guide's scripts, adopted (a manifest without run id): three stores within minutes
    put(root, "postgresql", "20261201_020000", "")
    put(root, "redis", "20261201_020412", "")
    put(root, "qdrant", "20261201_020901", "")
    # next night: Qdrant 40 minutes after PostgreSQL, beyond the 30-minute window
    put(root, "postgresql", "20261202_020000", "")
    put(root, "redis", "20261202_020300", "")
    put(root, "qdrant", "20261202_024000", "")
    # a second PostgreSQL backup within the window starts a new set
    put(root, "postgresql", "20261203_020000", "")
    put(root, "postgresql", "20261203_020500", "")
    put(root, "redis", "20261203_020600", "")
    _members, sets, _others = sets_of(root)
    got = [(s.run_id, sorted(s.members), s.legacy) for s in sets]
    assert got == [
        ("20261203_020500", ["postgresql", "redis"], True),
        ("20261203_020000", ["postgresql"], True),
        ("20261202_024000", ["qdrant"], True),
        ("20261202_020000", ["postgresql", "redis"], True),
        ("20261201_020000", ["postgresql", "qdrant", "redis"], True),
    ]
    assert _sets.select(sets, STORES).chosen.run_id == "20261201_020000"
    wide = _sets.group(_members, datetime.timedelta(minutes=45))
    assert [s.run_id for s in wide if s.complete(STORES)] == ["20261202_020000", "20261201_020000"]


def test_unadopted_legacy_files_are_not_good(tmp_path):
    root = str(tmp_path)
    for store in STORES:
        put(root, store, "20261201_020000", None)
    _members, sets, _others = sets_of(root)
    assert len(sets) == 1 and sets[0].legacy
    assert sets[0].members["redis"].status == "legacy"
    with pytest.raises(ConfigError) as exc:
        _sets.select(sets, STORES)
    assert "adopt.yml" in exc.value.msg


def test_other_hosts_backups_are_left_out(tmp_path):
    root = str(tmp_path)
    for store in STORES:
        put(root, store, "20261201_020010", "20261201_020000", host="db1")
        put(root, store, "20261202_020010", "20261202_020000", host="db2")  # fetched from db2
    _members, sets, others = sets_of(root, host="db1")
    assert [s.run_id for s in sets] == ["20261201_020000"] and others == 3
    assert sets[0].host == "db1"
    _members, sets, others = sets_of(root, host="db2")
    assert [s.run_id for s in sets] == ["20261202_020000"] and others == 3
    assert _sets.select(sets, STORES).chosen.members["qdrant"].name == "qdrant_backup_20261202_020010.tar.gz"


def test_set_as_dict(tmp_path):
    root = str(tmp_path)
    for store in STORES[:2]:
        put(root, store, "20261201_020010", "20261201_020000")
    _members, sets, _others = sets_of(root)
    data = sets[0].as_dict(STORES)
    assert data["run_id"] == "20261201_020000" and data["host"] == "db1" and data["complete"] is False
    assert data["stores"]["redis"]["file"] == "redis_backup_20261201_020010.rdb.gz"
    assert data["stores"]["redis"]["status"] == "good"
    assert data["missing"] == ["qdrant: no backup in the set"]
