# -*- coding: utf-8 -*-
# Copyright (c) cclite.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The one restore flow every store shares, the twin of ``_ops.make_backup``.

An engine supplies an :class:`Engine`: its plan, its content check, and the steps that touch
its data (prepare, swap, measure, finish, undo). The order of the steps, which is what makes a
restore safe, lives here:

1. choose the artifact: a file name, ``safety/<name>``, or ``latest``, resolved from the
   catalog (the newest backup that reads back good; the ``latest`` link is only compared);
2. the engine's plan: the target's current state and versions (nothing changes);
3. refuse without confirmation (check mode needs none);
4. read the whole artifact before any change (decrypted when it is encrypted: a missing or
   wrong key stops here, never falls back to an older backup; stream, sha256 against the manifest, the
   engine's content check; of a directory backup whose manifest lists its files, each file's
   sha256 only: the load reads the streams), and let the engine refuse what it cannot load
   (check mode stops here, with a prediction). An engine whose load reads the whole artifact
   into a staging place (``checks_while_loading``) gets only the cheap checks here (the
   manifest there and readable, its size, the key) in a real restore: the full read is its
   load, in step 7, checked as it streams (``_verify.LoadCheck``), and the verdict comes
   before the compare and the swap; a backup that fails it is refused in the same words, its
   staging undone, and for ``latest`` the next one is loaded;
5. take the store's lock (not a drill: it holds the store's readers lock, see ``_lock``);
6. the rollback point: a safety backup of the data about to be replaced, before any change,
   unless the engine keeps the replaced data itself at its swap;
7. prepare: the engine loads the artifact into a staging place, the old data untouched;
8. an engine that staged is measured now, and the core compares with the manifest;
9. swap, only while the Ansible run that started the restore still runs (``_controller.Watch``,
   which also kills the load of 7 once the run is gone): the new data serves; the replaced
   data is kept (or is in the safety backup);
10. an engine that loads in place is measured and compared now;
11. a safety backup from the kept data, when asked and not taken in 6; then the engine keeps
    or discards the replaced data (``keep_previous``).

A failure at any step says which step failed and what state the target is in: before the
swap the engine undoes its staging and nothing was changed; at or after the swap the message
says where the replaced data is and how to go back. A drill is the same flow with another
target (an engine built on a throwaway server) and ``safety_backup=False``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import time
import typing as t

from ansible_collections.cclite.backup.plugins.module_utils._core import _controller, _crypto, _ops, _progress
from ansible_collections.cclite.backup.plugins.module_utils._core._artifact import Compression
from ansible_collections.cclite.backup.plugins.module_utils._core._catalog import Catalog, Entry
from ansible_collections.cclite.backup.plugins.module_utils._core._errors import BackupError, ConfigError, RestoreError, VerifyError
from ansible_collections.cclite.backup.plugins.module_utils._core._lock import StoreLock
from ansible_collections.cclite.backup.plugins.module_utils._core._verify import ContentCheck, LoadCheck, Report, check_data

SAFETY = "safety/"
WHY_NOT_SWAPPED = "the backup's data was not put in place"


@dataclasses.dataclass
class RestoreSpec:
    """What to restore and how; the engine knows where."""

    catalog: Catalog
    name: str
    confirm: bool
    safety_backup: bool = True
    keep_previous: bool = False
    compression: Compression = dataclasses.field(default_factory=Compression)
    lock_timeout: float = 600.0
    file_mode: int = 0o600
    safety_series: str | None = None  # the safety copies' series; the catalog's by default
    encryption: _crypto.Key | None = None  # safety backups encrypted at rest with it (backup_local_encryption)
    # a drill: the target is throwaway, so the flow takes no store lock (a backup of the store
    # never waits for it); the drill holds the store's readers lock instead (``_lock.ReadersLock``)
    drill: bool = False

    def safety_catalog(self) -> Catalog:
        series = self.catalog.series if self.safety_series is None else self.safety_series
        return Catalog(self.catalog.root, self.catalog.layout.safety(), series)

    def safety_spec(self, fmt: str, content: _ops.ContentFactory, **kwargs: t.Any) -> _ops.BackupSpec:
        """The backup spec of a safety copy: its own catalog, never moving ``latest``."""
        return _ops.BackupSpec(
            catalog=self.safety_catalog(), compression=self.compression, fmt=fmt, content=content, kind="safety",
            move_latest=False, lock_timeout=self.lock_timeout, file_mode=self.file_mode, encryption=self.encryption, **kwargs,
        )


@dataclasses.dataclass
class Plan:
    """The target as it is before the restore."""

    target: str  # how messages name it: "database app on PostgreSQL at ..."
    current: bool  # there is data to replace
    result: dict[str, t.Any]  # the engine's own result keys, filled in as the steps run
    notes: list[str] = dataclasses.field(default_factory=list)  # worth telling, added as the steps run


@dataclasses.dataclass
class Count:
    """One measured count and what the manifest says it should be (``low`` to ``expected``)."""

    what: str  # "table public.users", "db0", "collection docs"
    unit: str  # "rows", "keys", "points"
    actual: int | None  # None: it is missing after the restore
    expected: int | None  # None: the manifest does not know it
    low: int | None = None  # the least that is right (keys with a TTL may expire); expected by default
    why_low: str = ""  # why fewer may be right, e.g. "12 with a TTL"


@dataclasses.dataclass
class RollbackPoint:
    """Where the replaced data is, and how to go back to it."""

    where: str
    how: str
    artifact: dict[str, t.Any] | None = None  # a safety backup's artifact

    @classmethod
    def of_safety(cls, artifact: t.Mapping[str, t.Any]) -> "RollbackPoint":
        return cls(artifact["path"], "restore safety/%s" % artifact["name"], dict(artifact))


class Engine(t.Protocol):
    """The steps of one store's restore; each may raise ``BackupError``.

    ``accept`` refuses what the target cannot load and returns words for check mode;
    ``safety_backup`` backs up the data about to be replaced (once swapped, the kept data);
    ``swap`` makes the new data serve and returns the kept replaced data, if it keeps it;
    ``measure`` gives the counts to compare with the manifest; ``finish`` keeps or discards
    the replaced data after success; ``undo`` removes the staging after a failure and says,
    in a sentence, what state the target is in when that is not "as it was".
    """

    store: str  # the lock's store name
    staged: bool  # prepare() loads into a staging place, measured before the swap
    keeps_previous: bool  # swap() keeps the replaced data itself as the rollback point
    # prepare() reads the whole artifact into a staging place through the ``LoadCheck`` it is
    # given: the full check runs during the load instead of before it (a real restore only)
    checks_while_loading: bool

    def plan(self) -> Plan: ...

    def content(self) -> ContentCheck | None: ...

    def accept(self, entry: Entry, check: t.Any) -> str: ...

    def safety_backup(self, spec: RestoreSpec) -> dict[str, t.Any]: ...

    def prepare(self, entry: Entry, check: LoadCheck | None = None) -> None: ...

    def swap(self, entry: Entry) -> RollbackPoint | None: ...

    def measure(self, entry: Entry) -> list[Count] | None: ...

    def finish(self, keep: bool) -> None: ...

    def undo(self, swapped: bool) -> str: ...

    def summary(self) -> str: ...


def compare(counts: t.Iterable[Count]) -> list[str]:
    """The engine measured; the core words what differs from the manifest."""
    problems = []
    for c in counts:
        low = c.expected if c.low is None else c.low
        if c.actual is None:
            if c.expected is not None:
                problems.append("%s is missing (%d %s expected)" % (c.what, c.expected, c.unit))
        elif c.expected is None:
            if c.actual:  # an empty table a dump leaves out is no problem
                problems.append("%s is not in the manifest" % c.what)
        elif not t.cast(int, low) <= c.actual <= c.expected:
            said = "%d (%s, so at least %d)" % (c.expected, c.why_low, t.cast(int, low)) if low != c.expected else str(c.expected)
            problems.append("%s has %d %s, the manifest says %s" % (c.what, c.actual, c.unit, said))
    return problems


def refuse(report: Report) -> Report:
    """A backup whose checks found problems is not restored: say so, in the same words wherever it is found."""
    if report.problems:
        raise VerifyError(
            "refusing to restore %s, nothing was changed: %s" % (report.name, "; ".join(report.problems)),
            report=report.as_dict(),
        )
    return report


def full_read(entry: Entry, check: ContentCheck | None) -> Report:
    """Read the whole artifact before any change; a corrupt file stops the restore here."""
    report = Report(entry.name, entry.path)
    if entry.manifest_error:  # unreadable, or gone while the journal says the collection made it
        report.failed("manifest", entry.manifest_error)
    check_data(report, entry, check, reread=False)
    return refuse(report)


def cheap_check(entry: Entry) -> Report:
    """What can be checked before any change without reading the data, when the full read runs
    during the load: the manifest is there and readable, its size is the file's, the key to
    decrypt it is configured."""
    report = Report(entry.name, entry.path)
    if entry.manifest_error:
        report.failed("manifest", entry.manifest_error)
    elif entry.manifest is not None:
        expected = entry.manifest.get("artifact", {}).get("size")
        if expected != entry.size:
            report.failed("manifest", "size %d differs from the manifest's %s: the file was changed or cut" % (entry.size, expected))
    if not entry.tree:
        try:
            _crypto.check_file_key(entry.path)
        except _crypto.WrongKey as exc:
            report.failed("key", exc.msg)
        except BackupError as exc:
            report.failed("stream", exc.msg)
    return refuse(report)


def link_target(catalog: Catalog) -> str | None:
    """The file name the ``latest`` link points to, read without trusting it."""
    links = [os.path.join(catalog.directory, n) for n in catalog.latest_names()]
    return next((os.path.basename(os.readlink(link)) for link in links if os.path.islink(link)), None)


def candidates(spec: RestoreSpec) -> tuple[list[Entry], bool]:
    """Step 1: the backup named, or for ``latest`` every backup newest first."""
    if spec.name.startswith(SAFETY):  # rolling back to what an earlier restore replaced
        return [spec.safety_catalog().resolve(spec.name[len(SAFETY):])], False
    if spec.name != "latest" and spec.name not in spec.catalog.latest_names():
        return [spec.catalog.resolve(spec.name)], False
    entries = spec.catalog.entries()
    if not entries:
        raise ConfigError("there is no backup in %s yet: run a backup first, or name a file" % spec.catalog.directory)
    return entries, True


def passed_over(exc: VerifyError, latest: bool, skipped: list[str]) -> None:
    """A backup that does not read back good: for ``latest``, noted and passed over; else the error."""
    if not latest or (exc.details.get("report") or {}).get("checks", {}).get("key") == "failed":
        raise exc  # a missing or wrong key is no reason to restore an older backup instead
    skipped.append(exc.msg)


def chosen(spec: RestoreSpec, entry: Entry, latest: bool, skipped: list[str], notes: list[str]) -> None:
    """The notes on the backup restored: newer ones passed over, a ``latest`` link pointing elsewhere."""
    if skipped:
        notes.append("newer backups do not read back good and were passed over: %s" % "; ".join(skipped))
    link = link_target(spec.catalog) if latest else entry.name
    if link not in (None, entry.name):
        notes.append("the latest link points to %s, but the newest good backup is %s: restored %s" % (link, entry.name, entry.name))


def none_good(spec: RestoreSpec, skipped: list[str]) -> VerifyError:
    return VerifyError("refusing to restore latest: no backup in %s reads back good: %s" % (spec.catalog.directory, "; ".join(skipped)))


def choose(spec: RestoreSpec, engine: Engine, entries: list[Entry], latest: bool, notes: list[str]) -> tuple[Entry, t.Any]:
    """Step 4: the first backup that reads back whole; for ``latest``, the newest good one."""
    skipped: list[str] = []
    for entry in entries:
        _progress.phase("read the whole backup", entry.size)
        check = engine.content()
        try:
            full_read(entry, check)
        except VerifyError as exc:
            passed_over(exc, latest, skipped)
            continue
        chosen(spec, entry, latest, skipped, notes)
        return entry, check
    raise none_good(spec, skipped)


def cheap_choose(spec: RestoreSpec, entries: list[Entry], latest: bool, skipped: list[str]) -> list[Entry]:
    """Step 4 of an engine that checks while loading: the backups that pass the cheap checks,
    newest first (the full check of each runs during its load)."""
    found = []
    for entry in entries:
        try:
            cheap_check(entry)
        except VerifyError as exc:
            passed_over(exc, latest, skipped)
            continue
        found.append(entry)
        if not latest:
            break
    if not found:
        raise none_good(spec, skipped)
    return found


class Flow:
    """Steps 1 to 11 for one engine; ``run`` returns the module's result."""

    def __init__(self, spec: RestoreSpec, engine: Engine) -> None:
        self.spec = spec
        self.engine = engine
        self.step = "choose the backup"
        self.swapped = False
        self.rollback: RollbackPoint | None = None
        self.plan: Plan | None = None

    def run(self, check_mode: bool) -> dict[str, t.Any]:
        try:
            return self._run(check_mode)
        except BackupError as exc:
            if isinstance(exc, RestoreError) and exc.details.get("worded"):
                raise
            raise self._failed(exc) from exc
        except Exception as exc:  # an OSError (disk full, permissions) still gets the undo and the state
            raise self._failed(BackupError("%s: %s" % (type(exc).__name__, exc))) from exc

    def _run(self, check_mode: bool) -> dict[str, t.Any]:
        spec, engine = self.spec, self.engine
        started = time.monotonic()
        entries, latest = candidates(spec)
        self.step = "plan"
        plan = self.plan = engine.plan()
        if not check_mode and not spec.confirm:
            raise RestoreError(
                "refusing to restore %s into %s without confirmation: set confirm: true (the module's option) once you are sure"
                % (spec.name if latest else entries[0].name, plan.target), worded=True,
            )
        self.step = "read the whole backup"
        streaming = engine.checks_while_loading and not check_mode
        skipped: list[str] = []
        if streaming:  # the full read runs during the load (step 7), its verdict before the compare and the swap
            entries = cheap_choose(spec, entries, latest, skipped)
            entry, check = entries[0], engine.content()
        else:
            entry, check = choose(spec, engine, entries, latest, plan.notes)
            entries = [entry]
        words = engine.accept(entry, check)
        out: dict[str, t.Any] = dict({"restored_from": entry.as_dict()}, **plan.result)
        out.update(safety_backup=None, rollback=None, notes=plan.notes, changed=True)
        if check_mode:
            out["msg"] = "would restore %s into %s (check mode: file checked, nothing changed)%s" % (entry.name, plan.target, words)
            return out
        self.step = "take the lock"
        lock = contextlib.nullcontext() if spec.drill else StoreLock(spec.catalog.directory, engine.store, "%s restore" % engine.store, spec.lock_timeout)
        with lock:
            safety_first = spec.safety_backup and plan.current and not engine.keeps_previous
            if safety_first:
                self.step = "safety backup"
                out["safety_backup"] = engine.safety_backup(spec)
                self.rollback = RollbackPoint.of_safety(out["safety_backup"])
            self.step = "prepare"
            _progress.phase("load", entry.size)
            with _progress.metering() as loaded:  # prepare and swap read the artifact to load it
                # a run that ended stops the load (its processes killed) and the restore before its swap
                with _controller.Watch(heartbeat=_controller.heartbeat_of(_progress.alive_file())) as watch:
                    try:
                        entry = self._load(entries, latest, skipped) if streaming else self._prepare(entry)
                        out["restored_from"] = entry.as_dict()
                        if engine.staged:
                            self._compare(entry)
                    except BaseException:
                        watch.check("the swap", "restore", WHY_NOT_SWAPPED)  # a load killed because the run ended: say so
                        raise
                    watch.check("the swap", "restore", WHY_NOT_SWAPPED)
                self.step = "swap"
                kept = engine.swap(entry)
            self.swapped = True
            if kept is not None:
                self.rollback = kept
            if not engine.staged:
                self._compare(entry)
            if spec.safety_backup and plan.current and not safety_first:
                self.step = "safety backup of the replaced data"
                out["safety_backup"] = engine.safety_backup(spec)
                if kept is None:
                    self.rollback = RollbackPoint.of_safety(out["safety_backup"])
            self.step = "keep or discard the replaced data"
            engine.finish(spec.keep_previous)
            if kept is not None and not spec.keep_previous:
                self.rollback = RollbackPoint.of_safety(out["safety_backup"]) if out["safety_backup"] else None
        out.update(plan.result)
        # the restore's own figures (restored_from holds the backup's): the data loaded, the time taken
        out["restore"] = {"size": loaded[0], "duration": round(time.monotonic() - started, 3)}
        out["rollback"] = dataclasses.asdict(self.rollback) if self.rollback else None
        out["msg"] = self._message(entry)
        return out

    def _prepare(self, entry: Entry) -> Entry:
        self.engine.prepare(entry)
        return entry

    def _load(self, entries: list[Entry], latest: bool, skipped: list[str]) -> Entry:
        """Step 7 with the full check of the artifact running as it loads; its verdict comes
        before anything else. A backup that fails it is refused (its staging undone, nothing
        changed), and for ``latest`` the next one that passed the cheap checks is loaded."""
        plan = t.cast(Plan, self.plan)
        for entry in entries:
            self.step = "prepare"
            check = LoadCheck(entry, self.engine.content())
            check.start()
            try:
                self.engine.prepare(entry, check)
            except BackupError:
                if not check.verdict().problems:
                    raise  # the artifact is good: the load itself failed
            report = check.verdict()
            if not report.problems:
                chosen(self.spec, entry, latest, skipped, plan.notes)
                return entry
            self.engine.undo(False)  # the staging of a backup that is refused
            try:
                refuse(report)
            except VerifyError as exc:
                self.step = "read the whole backup"  # refused like a backup read before the load: nothing was changed
                passed_over(exc, latest, skipped)
        self.step = "read the whole backup"
        raise none_good(self.spec, skipped)

    def _compare(self, entry: Entry) -> None:
        self.step = "compare with the manifest"
        counts = self.engine.measure(entry)
        problems = compare(counts or [])
        if problems:
            raise RestoreError("the restored data does not match the manifest: %s" % "; ".join(problems))

    def _hint(self) -> str:
        if self.rollback is None:
            return "no copy of the replaced data was kept"
        return "the data it replaced is saved in %s (to roll back, %s)" % (self.rollback.where, self.rollback.how)

    def _failed(self, exc: BackupError) -> BackupError:
        target = self.plan.target if self.plan else "the target"
        if self.step in ("choose the backup", "plan", "read the whole backup"):  # the same error, completed
            if "nothing was changed" not in exc.msg:
                exc.msg = exc.msg + "; nothing was changed"
                exc.args = (exc.msg,)
            return exc
        try:
            state = self.engine.undo(self.swapped)
        except Exception as undo_exc:  # pylint: disable=broad-exception-caught  # the first failure is the one to report
            state = "cleaning up after it failed too: %s" % getattr(undo_exc, "msg", undo_exc)
        if self.swapped:
            state = "%s; %s" % (state or "the restored data is in place", self._hint())
        elif state:  # the swap failed part way
            state = "%s; %s" % (state, self._hint())
        else:
            state = "nothing was changed: %s holds the data it had" % target
        return RestoreError("the restore failed at step '%s': %s. %s" % (self.step, exc.msg, state[:1].upper() + state[1:]), **exc.details)

    def _message(self, entry: Entry) -> str:
        plan = t.cast(Plan, self.plan)
        msg = "restored %s into %s (%s)" % (entry.name, plan.target, self.engine.summary())
        return "; ".join([msg] + ([self._hint()] if self.rollback else []) + plan.notes)


def restore(spec: RestoreSpec, engine: Engine, check_mode: bool) -> dict[str, t.Any]:
    return Flow(spec, engine).run(check_mode)
