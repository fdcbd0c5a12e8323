# -*- coding: utf-8 -*-
# Copyright (c) cclite.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The shared restore flow with a stand-in engine: every failure point leaves the old data serving.

The backups are real files of a real catalog (gzip, manifest with sha256 and row counts), read
by the real checks; only the store is a stand-in: a dict of table row counts that serves, a
staging dict and a kept dict, so each test can see exactly where the data is.
"""

from __future__ import annotations

import datetime
import gzip
import hashlib
import os
import typing as t

import pytest

from ansible_collections.cclite.backup.plugins.module_utils._core import _manifest
from ansible_collections.cclite.backup.plugins.module_utils._core import _artifact, _restore, _tree, _verify
from ansible_collections.cclite.backup.plugins.module_utils._core._artifact import Compression, Written
from ansible_collections.cclite.backup.plugins.module_utils._core._catalog import POSTGRESQL, Catalog, Entry
from ansible_collections.cclite.backup.plugins.module_utils._core._errors import BackupError, ConfigError, RestoreError, StageError, VerifyError
from ansible_collections.cclite.backup.plugins.module_utils._core._lock import LOCK_NAME, StoreLock
from ansible_collections.cclite.backup.plugins.module_utils._core._ops import make_backup
from ansible_collections.cclite.backup.plugins.module_utils._engines.postgresql._client import DumpComplete
from ansible_collections.cclite.backup.tests.unit.plugins.module_utils.test_ops import FakeProducer

OLD = {"public.users": 5}  # what the store serves before every restore


def dump(rows: int) -> str:
    lines = "".join("%d\tu%d\n" % (i, i) for i in range(rows))
    return (
        "--\n-- PostgreSQL database dump\n--\n\nCREATE TABLE public.users (id integer, name text);\n"
        "COPY public.users (id, name) FROM stdin;\n%s\\.\n\n--\n-- PostgreSQL database dump complete\n--\n\n" % lines
    )


def backup(catalog: Catalog, days: float, rows: int, latest: bool = False, sql: str | None = None) -> Entry:
    """A backup made ``days`` ago holding ``rows`` users (or ``sql``), with its manifest."""
    catalog.ensure()
    stamp = datetime.datetime.now().astimezone().replace(microsecond=0) - datetime.timedelta(days=days)
    path = os.path.join(catalog.directory, catalog.file_name(stamp, ".gz"))
    data = gzip.compress((dump(rows) if sql is None else sql).encode())
    with open(path, "wb") as handle:
        handle.write(data)
    written = Written(path, len(data), hashlib.sha256(data).hexdigest(), stamp, stamp)
    source = {"tables": {"public.users": rows}}
    _manifest.write(path, _manifest.build("postgresql", written, Compression("gzip", 6, 1), fmt="plain", source=source))
    if latest:
        link = os.path.join(catalog.directory, catalog.latest_name(".gz"))
        if os.path.lexists(link):
            os.unlink(link)
        os.symlink(os.path.basename(path), link)
    return catalog.resolve(os.path.basename(path))


class FakeEngine:
    """A store whose data is a dict; ``fail`` names the step that raises."""

    store = "postgresql"

    def __init__(self, staged: bool = True, keeps_previous: bool = True, fail: str = "", measured: dict | None = None,
                 checks_while_loading: bool = False) -> None:
        self.staged = staged
        self.keeps_previous = keeps_previous
        self.checks_while_loading = checks_while_loading
        self.fail = fail
        self.measured = measured  # what the load really gives, when not the backup's rows
        self.live: dict[str, int] = dict(OLD)
        self.staging: dict[str, int] | None = None
        self.kept: dict[str, int] | None = None
        self.calls: list[str] = []
        self.loaded: list[str] = []  # the backups a checking load read
        self.result: dict[str, t.Any] = {"tables": None}

    def _step(self, name: str) -> None:
        self.calls.append(name)
        if self.fail == name:
            raise StageError("%s broke" % name)

    def plan(self) -> _restore.Plan:
        self._step("plan")
        return _restore.Plan("the fake store", True, self.result)

    def content(self) -> DumpComplete:
        return DumpComplete()

    def accept(self, entry: Entry, check: t.Any) -> str:
        self._step("accept")
        return ""

    def safety_backup(self, spec: _restore.RestoreSpec) -> dict[str, t.Any]:
        self._step("safety")
        source = self.kept if self.kept is not None else self.live
        producer = FakeProducer(sql=dump(source["public.users"]), stats={"tables": dict(source)})
        return make_backup(spec.safety_spec("plain", DumpComplete), producer, {})["artifact"]

    def prepare(self, entry: Entry, check: _verify.LoadCheck | None = None) -> None:
        self._step("prepare")
        if check is not None:  # the load reads the artifact through the check, as PostgreSQL's psql does
            self.staging = {}
            self.loaded.append(entry.name)
            sql = b"".join(check.chunks())
            self.staging = {"public.users": sql.count(b"\tu")}
        else:
            self.staging = dict(self.measured or entry.manifest["source"]["tables"])
        if self.fail == "prepare-late":  # the load failed part way: staging holds something
            raise StageError("psql failed with exit status 3")

    def measure(self, entry: Entry) -> list[_restore.Count]:
        self._step("measure")
        have = self.staging if self.staged else self.live
        self.result["tables"] = dict(have)
        expected = entry.manifest["source"]["tables"]
        return [_restore.Count("table %s" % n, "rows", have.get(n), expected.get(n)) for n in sorted(set(have) | set(expected))]

    def swap(self, entry: Entry) -> _restore.RollbackPoint | None:
        self._step("swap")  # atomic: raises before anything moved
        if self.staging is None:  # loads in place
            self.staging = dict(self.measured or entry.manifest["source"]["tables"])
        if self.keeps_previous:
            self.kept = self.live
        self.live, self.staging = t.cast(dict, self.staging), None
        return _restore.RollbackPoint("the kept copy", "rename it back") if self.keeps_previous else None

    def finish(self, keep: bool) -> None:
        self._step("finish")
        if not keep:
            self.kept = None

    def undo(self, swapped: bool) -> str:
        self.calls.append("undo")
        self.staging = None
        return ""

    def summary(self) -> str:
        return "%d rows" % sum(self.live.values())


@pytest.fixture
def catalog(tmp_path) -> Catalog:
    return Catalog(str(tmp_path / "backups"), POSTGRESQL)


def spec_for(catalog: Catalog, name: str = "latest", **kwargs: t.Any) -> _restore.RestoreSpec:
    values: dict[str, t.Any] = {"confirm": True, "compression": Compression("gzip", 1, 1), "lock_timeout": 0.3}
    values.update(kwargs)
    return _restore.RestoreSpec(catalog, name, **values)


# --- success ----------------------------------------------------------------------------------


def test_a_staged_restore_keeps_the_replaced_data_and_dumps_it_after_the_swap(catalog):
    entry = backup(catalog, 1, 3, latest=True)
    engine = FakeEngine()
    out = _restore.restore(spec_for(catalog, keep_previous=True), engine, check_mode=False)
    assert engine.live == {"public.users": 3} and engine.kept == OLD
    # measured on the staging copy before the swap; the safety dump is of the kept data, after it
    assert engine.calls == ["plan", "accept", "prepare", "measure", "swap", "safety", "finish"]
    assert out["restored_from"]["name"] == entry.name and out["tables"] == {"public.users": 3}
    assert out["safety_backup"]["path"].startswith(os.path.join(catalog.directory, "safety", "postgres_safety_"))
    with open(out["safety_backup"]["path"], "rb") as handle:
        assert b"4\tu4\n" in gzip.decompress(handle.read())  # the five rows it replaced
    assert out["rollback"] == {"where": "the kept copy", "how": "rename it back", "artifact": None}
    assert out["msg"] == "restored %s into the fake store (3 rows); the data it replaced is saved in the kept copy (to roll back, rename it back)" % entry.name
    assert out["notes"] == []


def test_without_keep_previous_the_safety_backup_is_the_way_back(catalog):
    backup(catalog, 1, 3, latest=True)
    engine = FakeEngine()
    out = _restore.restore(spec_for(catalog), engine, check_mode=False)
    assert engine.live == {"public.users": 3} and engine.kept is None
    assert out["rollback"]["how"] == "restore safety/%s" % out["safety_backup"]["name"]
    assert "to roll back, restore safety/postgres_safety_" in out["msg"]


def test_an_engine_that_loads_in_place_takes_the_safety_backup_before_any_change(catalog):
    backup(catalog, 1, 3, latest=True)
    engine = FakeEngine(staged=False, keeps_previous=False)
    out = _restore.restore(spec_for(catalog), engine, check_mode=False)
    assert engine.calls == ["plan", "accept", "safety", "prepare", "swap", "measure", "finish"]
    assert engine.live == {"public.users": 3}
    assert out["safety_backup"]["name"] in out["rollback"]["how"]


def test_check_mode_reads_the_file_and_changes_nothing_without_confirmation(catalog):
    entry = backup(catalog, 1, 3, latest=True)
    engine = FakeEngine()
    out = _restore.restore(spec_for(catalog, confirm=False), engine, check_mode=True)
    assert out["msg"] == "would restore %s into the fake store (check mode: file checked, nothing changed)" % entry.name
    assert engine.calls == ["plan", "accept"] and engine.live == OLD
    assert not os.path.exists(os.path.join(catalog.directory, "safety"))


# --- choosing the artifact --------------------------------------------------------------------


def test_latest_is_the_newest_good_backup_not_the_link(catalog):
    older = backup(catalog, 2, 2, latest=True)
    newer = backup(catalog, 1, 3)  # a run whose link move was lost
    engine = FakeEngine()
    out = _restore.restore(spec_for(catalog), engine, check_mode=False)
    assert out["restored_from"]["name"] == newer.name and engine.live == {"public.users": 3}
    assert out["notes"] == [
        "the latest link points to %s, but the newest good backup is %s: restored %s" % (older.name, newer.name, newer.name)
    ]


def test_latest_passes_over_a_newer_backup_that_does_not_read_back(catalog):
    good = backup(catalog, 2, 2)
    bad = backup(catalog, 1, 3, latest=True)
    with open(bad.path, "r+b") as handle:
        handle.truncate(20)
    out = _restore.restore(spec_for(catalog), FakeEngine(), check_mode=False)
    assert out["restored_from"]["name"] == good.name
    assert out["notes"][0].startswith("newer backups do not read back good and were passed over: refusing to restore %s" % bad.name)
    assert "but the newest good backup is %s" % good.name in out["notes"][1]


def test_latest_without_a_link_is_the_newest_good_backup(catalog):
    backup(catalog, 2, 2)
    newest = backup(catalog, 1, 3)
    out = _restore.restore(spec_for(catalog), FakeEngine(), check_mode=False)
    assert out["restored_from"]["name"] == newest.name and out["notes"] == []


def test_a_safety_name_restores_from_the_safety_catalog(catalog):
    backup(catalog, 1, 3, latest=True)
    first = _restore.restore(spec_for(catalog), FakeEngine(), check_mode=False)
    engine = FakeEngine()
    out = _restore.restore(spec_for(catalog, "safety/" + first["safety_backup"]["name"], safety_backup=False), engine, check_mode=False)
    assert engine.live == OLD and out["restored_from"]["path"] == first["safety_backup"]["path"]


# --- failure points: the old data stays in place, the message names the step -------------------


def test_no_confirmation(catalog):
    backup(catalog, 1, 3, latest=True)
    engine = FakeEngine()
    with pytest.raises(RestoreError, match=r"^refusing to restore latest into the fake store without confirmation: set confirm: true") as err:
        _restore.restore(spec_for(catalog, confirm=False), engine, check_mode=False)
    assert "role" not in err.value.msg and "restore_confirm" not in err.value.msg
    assert engine.calls == ["plan"] and engine.live == OLD


@pytest.mark.parametrize("damage", ["truncate", "flip", "unknown name"])
def test_artifact_bad(catalog, damage):
    entry = backup(catalog, 1, 3, latest=True)
    name = entry.name
    if damage == "truncate":
        with open(entry.path, "r+b") as handle:
            handle.truncate(30)
    elif damage == "flip":
        with open(entry.path, "r+b") as handle:
            handle.seek(entry.size // 2)
            handle.write(b"\xff\xff")
    else:
        name = "postgres_backup_20200101_000000.sql.gz"
    engine = FakeEngine()
    with pytest.raises((VerifyError, ConfigError)) as err:
        _restore.restore(spec_for(catalog, name), engine, check_mode=False)
    assert "nothing was changed" in err.value.msg
    assert ("refusing to restore %s" % name in err.value.msg) if damage != "unknown name" else ("not found" in err.value.msg)
    assert "prepare" not in engine.calls and engine.live == OLD and engine.staging is None


def test_a_plan_that_fails_keeps_its_error_type(catalog):
    """An engine's own error class (an HTTP error with its status) reaches the module as it is."""

    class HttpError(StageError):
        def __init__(self, msg: str, status: int) -> None:
            super().__init__(msg)
            self.status = status

    backup(catalog, 1, 3, latest=True)
    engine = FakeEngine()

    def refused() -> _restore.Plan:
        raise HttpError("the server answered 401", 401)

    engine.plan = refused  # type: ignore[method-assign]
    with pytest.raises(HttpError) as err:
        _restore.restore(spec_for(catalog), engine, check_mode=False)
    assert err.value.msg == "the server answered 401; nothing was changed" and err.value.status == 401
    assert engine.live == OLD


def test_lock_held(catalog):
    backup(catalog, 1, 3, latest=True)
    engine = FakeEngine()
    with StoreLock(catalog.directory, "postgresql", "postgresql backup"):
        with pytest.raises(RestoreError, match=r"failed at step 'take the lock': .*Nothing was changed: the fake store holds the data it had"):
            _restore.restore(spec_for(catalog), engine, check_mode=False)
    assert "prepare" not in engine.calls and engine.live == OLD


def test_safety_backup_fails(catalog):
    backup(catalog, 1, 3, latest=True)
    engine = FakeEngine(staged=False, keeps_previous=False, fail="safety")
    with pytest.raises(RestoreError) as err:
        _restore.restore(spec_for(catalog), engine, check_mode=False)
    assert err.value.msg == "the restore failed at step 'safety backup': safety broke. Nothing was changed: the fake store holds the data it had"
    assert "prepare" not in engine.calls and engine.live == OLD


def test_safety_backup_fails_for_real(catalog):
    """The safety copy's own pipeline fails (its dump exits non-zero): no half copy, nothing changed."""
    backup(catalog, 1, 3, latest=True)
    engine = FakeEngine(staged=False, keeps_previous=False)
    engine.safety_backup = lambda spec: make_backup(  # type: ignore[method-assign]
        spec.safety_spec("plain", DumpComplete), FakeProducer(command=_false()), {}
    )["artifact"]
    with pytest.raises(RestoreError, match=r"failed at step 'safety backup': .*exit status 1.*Nothing was changed"):
        _restore.restore(spec_for(catalog), engine, check_mode=False)
    assert engine.live == OLD and [n for n in os.listdir(os.path.join(catalog.directory, "safety")) if n != LOCK_NAME] == []


def _false() -> t.Any:
    from ansible_collections.cclite.backup.plugins.module_utils._core._process import Command

    return Command(("false",), stage="pg_dump")


@pytest.mark.parametrize("fail", ["prepare", "prepare-late"])
def test_load_fails(catalog, fail):
    backup(catalog, 1, 3, latest=True)
    engine = FakeEngine(fail=fail)
    with pytest.raises(RestoreError, match=r"failed at step 'prepare': .*\. Nothing was changed: the fake store holds the data it had"):
        _restore.restore(spec_for(catalog), engine, check_mode=False)
    assert engine.calls[-1] == "undo" and "swap" not in engine.calls
    assert engine.live == OLD and engine.staging is None  # the staging was removed


def test_an_os_error_in_a_step_still_undoes_and_names_the_step(catalog):
    backup(catalog, 1, 3, latest=True)
    engine = FakeEngine()

    def full_disk(entry: Entry) -> None:
        engine.staging = {"public.users": 1}
        raise OSError(28, "No space left on device")

    engine.prepare = full_disk  # type: ignore[method-assign]
    with pytest.raises(RestoreError, match=r"failed at step 'prepare': OSError: \[Errno 28\] No space left on device\. Nothing was changed"):
        _restore.restore(spec_for(catalog), engine, check_mode=False)
    assert engine.live == OLD and engine.staging is None and engine.calls[-1] == "undo"


def test_compare_fails(catalog):
    backup(catalog, 1, 3, latest=True)
    engine = FakeEngine(measured={"public.users": 2, "public.extra": 1})
    with pytest.raises(RestoreError) as err:
        _restore.restore(spec_for(catalog), engine, check_mode=False)
    assert err.value.msg == (
        "the restore failed at step 'compare with the manifest': the restored data does not match the manifest: "
        "table public.extra is not in the manifest; table public.users has 2 rows, the manifest says 3. "
        "Nothing was changed: the fake store holds the data it had"
    )
    assert "swap" not in engine.calls and engine.live == OLD and engine.staging is None


def test_swap_fails(catalog):
    backup(catalog, 1, 3, latest=True)
    engine = FakeEngine(fail="swap")
    with pytest.raises(RestoreError, match=r"failed at step 'swap': swap broke\. Nothing was changed: the fake store holds the data it had"):
        _restore.restore(spec_for(catalog), engine, check_mode=False)
    assert engine.live == OLD and engine.staging is None and engine.kept is None


def test_a_failure_after_the_swap_says_where_the_replaced_data_is(catalog):
    backup(catalog, 1, 3, latest=True)
    engine = FakeEngine(fail="safety")  # the dump of the kept data, after the swap
    with pytest.raises(RestoreError) as err:
        _restore.restore(spec_for(catalog), engine, check_mode=False)
    assert err.value.msg == (
        "the restore failed at step 'safety backup of the replaced data': safety broke. The restored data is in place; "
        "the data it replaced is saved in the kept copy (to roll back, rename it back)"
    )
    assert engine.kept == OLD and "finish" not in engine.calls  # the kept data was not discarded


def test_a_compare_failure_after_an_in_place_load_names_the_safety_backup(catalog):
    backup(catalog, 1, 3, latest=True)
    engine = FakeEngine(staged=False, keeps_previous=False, measured={"public.users": 1})
    with pytest.raises(RestoreError) as err:
        _restore.restore(spec_for(catalog), engine, check_mode=False)
    assert "failed at step 'compare with the manifest'" in err.value.msg
    assert "The restored data is in place; the data it replaced is saved in %s" % os.path.join(catalog.directory, "safety") in err.value.msg
    assert "to roll back, restore safety/postgres_safety_" in err.value.msg


def test_compare_words_every_kind_of_difference():
    counts = [
        _restore.Count("table a", "rows", None, 4),
        _restore.Count("table b", "rows", 0, None),
        _restore.Count("table c", "rows", 2, None),
        _restore.Count("db0", "keys", 7, 10, 8, "2 with a TTL"),
        _restore.Count("db1", "keys", 9, 10, 8, "2 with a TTL"),
        _restore.Count("collection d", "points", 4, 4),
    ]
    assert _restore.compare(counts) == [
        "table a is missing (4 rows expected)",
        "table c is not in the manifest",
        "db0 has 7 keys, the manifest says 10 (2 with a TTL, so at least 8)",
    ]


def test_every_failure_is_a_backup_error():
    assert issubclass(RestoreError, BackupError)


# --- the full check during the load (an engine that loads the whole artifact into staging) -----


def _count_reads(monkeypatch) -> list[str]:
    """Every time the artifact's stored bytes are read from the start."""
    opened: list[str] = []
    original = _artifact.read_chunks

    def counting(handle: t.Any, *args: t.Any, **kwargs: t.Any) -> t.Iterator[bytes]:
        opened.append(os.path.basename(handle.name))
        return original(handle, *args, **kwargs)

    monkeypatch.setattr(_artifact, "read_chunks", counting)
    return opened


def test_a_checking_load_reads_the_artifact_once_and_checks_it_before_the_swap(catalog, monkeypatch):
    entry = backup(catalog, 1, 3, latest=True)
    reads = _count_reads(monkeypatch)
    engine = FakeEngine(checks_while_loading=True)
    out = _restore.restore(spec_for(catalog, safety_backup=False, keep_previous=True), engine, check_mode=False)
    assert reads == [entry.name]  # one read: the load's
    assert engine.calls == ["plan", "accept", "prepare", "measure", "swap", "finish"]
    assert engine.live == {"public.users": 3} and engine.kept == OLD and out["restored_from"]["name"] == entry.name


def test_check_mode_of_a_checking_engine_still_reads_the_whole_file(catalog, monkeypatch):
    entry = backup(catalog, 1, 3, latest=True)
    reads = _count_reads(monkeypatch)
    engine = FakeEngine(checks_while_loading=True)
    _restore.restore(spec_for(catalog, confirm=False), engine, check_mode=True)
    assert reads == [entry.name] and engine.calls == ["plan", "accept"] and engine.live == OLD


def _damage(entry: Entry, how: str) -> str:
    """Damage ``entry`` so that only a full read finds it; returns the words of the problem."""
    if how == "flip":  # the same size, other bytes: the gzip stream or the sha256 says so
        with open(entry.path, "r+b") as handle:
            handle.seek(entry.size // 2)
            handle.write(b"\xff\xff\xff")
        return r"(gzip stream is corrupt|sha256 [0-9a-f]{64} differs from the manifest's)"
    if how == "sha256":  # a whole gzip stream, the same size, but not the bytes the manifest describes (its mtime)
        with open(entry.path, "r+b") as handle:
            handle.seek(4)
            handle.write(b"\x01\x02\x03\x04")
        return "sha256 [0-9a-f]{64} differs from the manifest's %s" % entry.manifest["artifact"]["sha256"]
    raise AssertionError(how)


@pytest.mark.parametrize("how", ["flip", "sha256", "content", "truncated stream"])
def test_a_bad_artifact_found_during_the_load_changes_nothing(catalog, how):
    if how == "content":  # pg_dump did not finish: no closing line, though the file is as written
        entry = backup(catalog, 1, 3, latest=True, sql=dump(3).split("--\n-- PostgreSQL database dump complete", maxsplit=1)[0])
        problem = "the SQL does not end with pg_dump's 'dump complete' line"
    elif how == "truncated stream":  # cut, with a manifest that describes the cut file (a copy cut before it was made)
        entry = backup(catalog, 1, 3, latest=True, sql=dump(3) * 50)
        with open(entry.path, "rb") as handle:
            data = handle.read()[: entry.size - 40]
        with open(entry.path, "wb") as handle:
            handle.write(data)
        written = Written(entry.path, len(data), hashlib.sha256(data).hexdigest(), entry.created, entry.created)
        _manifest.write(entry.path, _manifest.build("postgresql", written, Compression("gzip", 6, 1), fmt="plain",
                                                    source={"tables": {"public.users": 150}}))
        entry = catalog.resolve(entry.name)
        problem = "the gzip stream ends early; the file is truncated"
    else:
        entry = backup(catalog, 1, 3, latest=True)
        problem = _damage(entry, how)
    engine = FakeEngine(checks_while_loading=True)
    with pytest.raises(VerifyError, match=r"^refusing to restore %s, nothing was changed: %s: .*%s" % (entry.name, entry.name, problem)) as err:
        _restore.restore(spec_for(catalog, entry.name), engine, check_mode=False)
    assert err.value.msg.count("nothing was changed") == 1
    assert engine.loaded == [entry.name] or how == "truncated stream"  # found while loading, not before
    assert "prepare" in engine.calls and engine.calls[-1] == "undo" and "swap" not in engine.calls
    assert engine.live == OLD and engine.staging is None  # the old data serves, the staging is gone


def test_the_cheap_checks_still_come_before_any_change(catalog):
    entry = backup(catalog, 1, 3, latest=True)
    with open(entry.path, "r+b") as handle:
        handle.truncate(30)
    engine = FakeEngine(checks_while_loading=True)
    with pytest.raises(VerifyError, match=r"^refusing to restore %s, nothing was changed: .*size 30 differs from the manifest's" % entry.name):
        _restore.restore(spec_for(catalog, entry.name), engine, check_mode=False)
    assert "prepare" not in engine.calls and engine.live == OLD and engine.staging is None


def test_latest_passes_over_a_backup_found_bad_during_its_load(catalog):
    good = backup(catalog, 2, 2)
    bad = backup(catalog, 1, 3, latest=True)
    _damage(bad, "sha256")
    engine = FakeEngine(checks_while_loading=True)
    out = _restore.restore(spec_for(catalog, safety_backup=False, keep_previous=True), engine, check_mode=False)
    assert engine.loaded == [bad.name, good.name]
    assert out["restored_from"]["name"] == good.name and engine.live == {"public.users": 2} and engine.kept == OLD
    assert out["notes"][0].startswith("newer backups do not read back good and were passed over: refusing to restore %s, nothing was changed: "
                                      "%s: sha256" % (bad.name, bad.name))
    assert engine.staging is None


def tree_backup(catalog: Catalog, days: float, rows: int) -> Entry:
    """A directory-format backup made ``days`` ago (a table of contents and one gzipped table of
    ``rows`` users), with its manifest listing every file's sha256."""
    catalog.ensure()
    stamp = datetime.datetime.now().astimezone().replace(microsecond=0) - datetime.timedelta(days=days)
    path = os.path.join(catalog.directory, catalog.file_name(stamp, ".dir"))
    os.makedirs(path)
    with open(os.path.join(path, "toc.dat"), "wb") as handle:
        handle.write(b"PGDMP" + b"\0" * 200)
    with gzip.open(os.path.join(path, "3346.dat.gz"), "wb") as handle:
        handle.write(b"".join(b"%d\tu%d\n" % (i, i) for i in range(rows)) + b"\\.\n\n\n")
    scanned = _tree.scan(path)
    written = Written(path, scanned.size, scanned.sha256, stamp, stamp, None, scanned.listed())
    _manifest.write(path, _manifest.build("postgresql", written, Compression("gzip", 1, 1), fmt="directory",
                                          source={"tables": {"public.users": rows}}))
    return catalog.resolve(os.path.basename(path))


class TreeEngine(FakeEngine):
    """Loads a directory backup as pg_restore does: from its files, the check running beside it."""

    def prepare(self, entry: Entry, check: _verify.LoadCheck | None = None) -> None:
        self._step("prepare")
        self.loaded.append(entry.name)
        with gzip.open(os.path.join(entry.path, "3346.dat.gz"), "rb") as handle:
            self.staging = {"public.users": handle.read().count(b"\tu")}


def test_latest_passes_over_a_directory_backup_found_bad_during_its_load(catalog):
    good = tree_backup(catalog, 2, 2)
    bad = tree_backup(catalog, 1, 3)
    with open(os.path.join(bad.path, "toc.dat"), "r+b") as handle:  # the same size, other bytes: only the sha256 tells
        handle.seek(10)
        handle.write(b"\x01")
    engine = TreeEngine(checks_while_loading=True)
    out = _restore.restore(spec_for(catalog, safety_backup=False, keep_previous=True), engine, check_mode=False)
    assert engine.loaded == [bad.name, good.name] and out["restored_from"]["name"] == good.name
    assert engine.live == {"public.users": 2} and engine.kept == OLD and engine.staging is None
    assert "toc.dat: sha256" in out["notes"][0]


def test_a_fault_of_the_directory_check_itself_stops_the_restore_and_changes_nothing(catalog, monkeypatch):
    # not a verdict on the backup (seen once: a thread pool's lock released under it by a fork
    # hook): the restore stops with nothing changed, and latest does not fall back to an older one
    tree_backup(catalog, 2, 2)
    newest = tree_backup(catalog, 1, 3)

    def broken(*_args: t.Any, **_kwargs: t.Any) -> None:
        raise RuntimeError("release unlocked lock")

    monkeypatch.setattr(_verify, "check_tree_data", broken)
    engine = TreeEngine(checks_while_loading=True)
    with pytest.raises(RestoreError, match=r"failed at step 'prepare': the check of %s failed while it loaded, on its own fault, not the "
                                           r"backup's: RuntimeError: release unlocked lock\. Nothing was changed" % newest.name):
        _restore.restore(spec_for(catalog), engine, check_mode=False)
    assert engine.loaded == [newest.name] and engine.calls[-1] == "undo" and "swap" not in engine.calls
    assert engine.live == OLD and engine.staging is None


def test_latest_with_no_good_backup_changes_nothing(catalog):
    bad = backup(catalog, 1, 3, latest=True)
    _damage(bad, "sha256")
    engine = FakeEngine(checks_while_loading=True)
    with pytest.raises(VerifyError, match=r"^refusing to restore latest: no backup in .* reads back good: refusing to restore %s" % bad.name):
        _restore.restore(spec_for(catalog), engine, check_mode=False)
    assert engine.live == OLD and engine.staging is None and "swap" not in engine.calls


def test_a_load_that_fails_on_a_good_artifact_is_a_load_failure(catalog):
    backup(catalog, 1, 3, latest=True)
    engine = FakeEngine(checks_while_loading=True, fail="prepare")
    with pytest.raises(RestoreError, match=r"failed at step 'prepare': prepare broke\. Nothing was changed: the fake store holds the data it had"):
        _restore.restore(spec_for(catalog), engine, check_mode=False)
    assert engine.live == OLD and engine.staging is None
