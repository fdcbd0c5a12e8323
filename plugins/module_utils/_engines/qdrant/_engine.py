# -*- coding: utf-8 -*-
# Copyright (c) cclite.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Qdrant backup, inspection and restore, on the shared flows of ``_ops``."""

from __future__ import annotations

import dataclasses
import datetime
import io
import json
import os
import shutil
import sys
import tarfile
import tempfile
import threading
import time
import typing as t

from ansible_collections.cclite.backup.plugins.module_utils._core import _adopt
from ansible_collections.cclite.backup.plugins.module_utils._core import _ops
from ansible_collections.cclite.backup.plugins.module_utils._core import _progress
from ansible_collections.cclite.backup.plugins.module_utils._core import _restore
from ansible_collections.cclite.backup.plugins.module_utils._engines.qdrant import _client as qd
from ansible_collections.cclite.backup.plugins.module_utils._core._artifact import ArtifactReader, Compression, Source, utcnow
from ansible_collections.cclite.backup.plugins.module_utils._core._catalog import QDRANT, Catalog, Entry
from ansible_collections.cclite.backup.plugins.module_utils._core._errors import BackupError, ConfigError, RestoreError, VerifyError
from ansible_collections.cclite.backup.plugins.module_utils._core._process import redact
from ansible_collections.cclite.backup.plugins.module_utils._core._verify import Report, Rules

FORMATS = {qd.KIND_COLLECTIONS: "qdrant-snapshots", qd.KIND_FULL: "qdrant-full-snapshot"}


def catalog(root: str, series: str = "") -> Catalog:
    return Catalog(root, QDRANT, series)


@dataclasses.dataclass
class Plan:
    """What one backup takes: the server and the collections as they were just before."""

    server: dict[str, t.Any]
    collections: list[dict[str, t.Any]]
    full: bool = False

    @property
    def kind(self) -> str:
        return qd.KIND_FULL if self.full else qd.KIND_COLLECTIONS

    def versions(self) -> dict[str, str]:
        return {"server": str(self.server["version"])}


def describe_collection(client: qd.Client, name: str, aliases: t.Mapping[str, str]) -> dict[str, t.Any]:
    info = client.collection(name)
    config = info.get("config") or {}
    return {
        "name": name,
        "points_count": info.get("points_count"),
        "vectors": (config.get("params") or {}).get("vectors"),
        "config": config,
        "aliases": sorted(a for a, c in aliases.items() if c == name),
    }


def survey(client: qd.Client, wanted: t.Sequence[str], full: bool) -> Plan:
    """Check the server and the collections to back up (``wanted``, or all)."""
    server = client.server()
    names = client.collections()
    aliases = client.aliases()
    if full and wanted:
        raise ConfigError("a full-storage snapshot holds every collection: leave collections empty with full_snapshot")
    for name in wanted:
        if name not in names:
            if name in aliases:
                raise ConfigError("%s is an alias of collection %s: list the collection, its aliases are saved with it" % (name, aliases[name]))
            raise ConfigError(
                "collection %s does not exist on %s; it has: %s" % (name, client.conn.describe(), ", ".join(names) or "no collections")
            )
    selected = list(dict.fromkeys(wanted)) or names
    if not selected:
        raise BackupError("%s has no collections: there is nothing to back up" % client.conn.describe())
    return Plan(server, [describe_collection(client, name, aliases) for name in selected], full)


def summary(collections: t.Sequence[t.Mapping[str, t.Any]], server: t.Mapping[str, t.Any], kind: str) -> dict[str, t.Any]:
    """The source statistics of the JSON manifest sidecar."""
    return {
        "server_version": server.get("version"),
        "kind": kind,
        "collections": {
            c["name"]: {k: c.get(k) for k in ("points_count", "points_count_after", "aliases", "size", "sample") if c.get(k) is not None}
            for c in collections
        },
        "collection_count": len(collections),
        "total_points": sum(c.get("points_count") or 0 for c in collections),
    }


class BundleProducer:
    """Producer for ``_ops.make_backup``: a Python source that writes the bundle's tar stream.

    For each collection: create a snapshot (``wait=false``, then poll), download it into a
    temp file in ``workdir`` (the backup directory) checking its sha256 against the server's
    checksum, add it to the tar stream, delete the temp file and the snapshot on the server.
    Tar headers need each member's size first, hence the temp file: memory stays constant and
    the extra disk is one snapshot at a time. ``manifest.json`` goes last.
    """

    def __init__(self, client: qd.Client, plan: Plan, workdir: str, file_mode: int = 0o600) -> None:
        self.client = client
        self.plan = plan
        self.workdir = workdir
        self.file_mode = file_mode
        self.entries: list[dict[str, t.Any]] = []
        self.full: dict[str, t.Any] | None = None
        self.notes: list[str] = []
        self._cancel = threading.Event()
        self._done = threading.Event()
        self._done.set()
        self._guard = threading.Lock()
        self._on_server: set[tuple[t.Optional[str], str]] = set()
        self._temps: set[str] = set()
        self.created = ""

    # Producer protocol -----------------------------------------------------------------------

    def start(self) -> Source:
        self._done.clear()
        return self._write

    def finish(self) -> dict[str, t.Any]:
        return summary(self.entries, self.plan.server, self.plan.kind)

    def close(self) -> None:
        """Stop a running source, then remove what it left: temp files, server snapshots."""
        self._cancel.set()
        self._done.wait(timeout=max(self.client.conn.timeout * 2, 30))
        for scope, name in list(self._on_server):
            self._drop(scope, name)
        for path in list(self._temps):
            self._unlink(path)

    # the source ------------------------------------------------------------------------------

    def _write(self, sink: t.BinaryIO) -> None:
        try:
            _progress.hold()  # a consistent set: wait here until the application is paused
            self.created = utcnow().isoformat()
            with tarfile.open(fileobj=sink, mode="w|", format=tarfile.PAX_FORMAT) as tar:
                if self.plan.full:
                    self._add_full(tar)
                else:
                    for info in self.plan.collections:
                        self._add_collection(tar, info)
                data = json.dumps(self.manifest(), indent=2, sort_keys=True).encode("utf-8")
                self._add_bytes(tar, qd.MANIFEST_MEMBER, data)
        finally:
            self._done.set()

    def manifest(self) -> dict[str, t.Any]:
        return {
            "schema": qd.BUNDLE_SCHEMA,
            "version": 1,
            "kind": self.plan.kind,
            "created": self.created,
            "server": dict(self.plan.server, url=redact(self.client.base, self.client.conn.secrets())),
            "collections": self.entries,
            "full_snapshot": self.full,
        }

    def _snapshot(self, scope: str | None, fixes: bool = False) -> dict[str, t.Any]:
        """Create a snapshot; ``fixes``: the last one, whose start fixes the backup's point in time."""
        if self._cancel.is_set():
            raise BackupError("the backup stopped")
        desc = self.client.create_snapshot(scope, self._cancel, started=_progress.point_fixed if fixes else None)
        with self._guard:
            self._on_server.add((scope, desc["name"]))
        return desc

    def _sample(self, name: str) -> list[dict[str, t.Any]] | None:
        """A few points of a collection (ids and sha256 of vectors and payloads) for drills; a
        sample that cannot be read is a note, not a failed backup (a drill then says so)."""
        try:
            return self.client.sample(name)
        except BackupError as exc:
            self.notes.append("no point sample of collection %s was recorded (a drill will not compare values): %s" % (name, exc.msg))
            return None

    def _keep_sample(self, entry: dict[str, t.Any], before: list[dict[str, t.Any]] | None) -> None:
        """Record the points read the same before the snapshot and after its download: a point
        written to meanwhile may hold either value in the snapshot, so it is left out."""
        if before is None:
            return
        after = self._sample(entry["name"])
        if after is None:
            return
        entry["sample"] = [p for p in before if p in after]
        if len(entry["sample"]) < len(before):
            self.notes.append("collection %s: %d sampled point(s) changed during the backup and were left out of the point sample"
                              % (entry["name"], len(before) - len(entry["sample"])))

    def _add_collection(self, tar: tarfile.TarFile, info: t.Mapping[str, t.Any]) -> None:
        name = info["name"]
        before = self._sample(name)
        desc = self._snapshot(name, fixes=info is self.plan.collections[-1])
        try:
            path, size, sha256 = self._download(name, desc)
            after = self.client.count(name)
            entry = dict(info, snapshot=desc["name"], member=qd.member_name(name), sha256=sha256, size=size)
            self._keep_sample(entry, before)
            if info.get("points_count") is not None and after != info["points_count"]:
                entry["points_count_after"] = after  # written to meanwhile: the snapshot holds a count in between
            self._add_file(tar, entry["member"], path, size)
            self.entries.append(entry)
        finally:
            self._drop(name, desc["name"])

    def _add_full(self, tar: tarfile.TarFile) -> None:
        before = {c["name"]: self._sample(c["name"]) for c in self.plan.collections}
        desc = self._snapshot(None, fixes=True)
        try:
            path, size, sha256 = self._download(None, desc)
            files, config = qd.inner_snapshots(path)
            mapping = config.get("collections_mapping") or {}
            aliases = config.get("collections_aliases") or {}
            known = {c["name"]: c for c in self.plan.collections}
            member = qd.FULL_DIR + desc["name"]
            for name in sorted(mapping):
                inner = mapping[name]
                if inner not in files:
                    raise BackupError("the full-storage snapshot %s lists %s for %s but does not hold it" % (desc["name"], inner, name))
                info = known.get(name) or describe_collection(self.client, name, {})
                entry = dict(info, snapshot=inner, member=inner, container=member, size=files[inner][0], sha256=files[inner][1])
                entry["aliases"] = sorted(a for a, c in aliases.items() if c == name)
                self._keep_sample(entry, before.get(name))
                self.entries.append(entry)
                self._drop_if_listed(name, inner)
            self.full = {"name": desc["name"], "member": member, "size": size, "sha256": sha256}
            self._add_file(tar, member, path, size)
        finally:
            self._drop(None, desc["name"])

    def _download(self, scope: str | None, desc: t.Mapping[str, t.Any]) -> tuple[str, int, str]:
        fd, path = tempfile.mkstemp(dir=self.workdir, prefix=".qdrant-snapshot.", suffix=".partial")
        with self._guard:
            self._temps.add(path)
        os.fchmod(fd, self.file_mode)
        with os.fdopen(fd, "wb") as out:
            size, sha256 = self.client.download(scope, desc, out, self._cancel)
        return path, size, sha256

    def _add_file(self, tar: tarfile.TarFile, member: str, path: str, size: int) -> None:
        info = tarfile.TarInfo(member)
        info.size = size
        info.mtime = int(time.time())
        info.mode = 0o600
        with open(path, "rb") as source:
            tar.addfile(info, source)
        self._unlink(path)

    @staticmethod
    def _add_bytes(tar: tarfile.TarFile, member: str, data: bytes) -> None:
        info = tarfile.TarInfo(member)
        info.size = len(data)
        info.mtime = int(time.time())
        info.mode = 0o600
        tar.addfile(info, io.BytesIO(data))

    def _unlink(self, path: str) -> None:
        with self._guard:
            self._temps.discard(path)
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass

    def _drop(self, scope: str | None, name: str) -> None:
        """Delete a snapshot this backup made from the server, once."""
        with self._guard:
            if (scope, name) not in self._on_server:
                return
            self._on_server.discard((scope, name))
        try:
            self.client.delete_snapshot(scope, name)
        except BackupError as exc:
            where = qd.snapshots_path(scope)
            self.notes.append("could not delete snapshot %s from the server (%s): delete it with DELETE %s/%s" % (name, exc.msg, where, name))

    def _drop_if_listed(self, collection: str, name: str) -> None:
        """A server may keep the collection snapshots it packed into a full snapshot: delete
        exactly those (by name), nothing else."""
        try:
            listed = {s["name"] for s in self.client.snapshots(collection)}
        except BackupError:
            return
        if name in listed:
            with self._guard:
                self._on_server.add((collection, name))
            self._drop(collection, name)


@dataclasses.dataclass
class BackupRequest:
    conn: qd.Connection
    spec: _ops.BackupSpec
    collections: t.Sequence[str] = ()
    full: bool = False


def backup_spec(
    catalog_: Catalog,
    compression: Compression,
    full: bool = False,
    **kwargs: t.Any,
) -> _ops.BackupSpec:
    return _ops.BackupSpec(
        catalog=catalog_,
        compression=compression,
        fmt=FORMATS[qd.KIND_FULL if full else qd.KIND_COLLECTIONS],
        content=qd.BundleCheck,
        **kwargs,
    )


def backup(req: BackupRequest, check_mode: bool) -> dict[str, t.Any]:
    client = qd.Client(req.conn)
    plan = survey(client, req.collections, req.full)
    if check_mode:
        out = _ops.predict_backup(req.spec)
        out["artifact"]["versions"] = plan.versions()
        out["source"] = summary(plan.collections, plan.server, plan.kind)
        out["notes"] = []
        return out
    producer = BundleProducer(client, plan, req.spec.catalog.directory, req.spec.file_mode)
    out = _ops.make_backup(req.spec, producer, plan.versions())
    out["notes"] = producer.notes
    return out


# -- inspection ----------------------------------------------------------------------------


def deep_check(workdir: str | None = None) -> t.Callable[[Entry, Report], None]:
    """Load every collection snapshot of a bundle with Qdrant Edge and compare its points
    count with the manifest; a clear note when the managed host has no ``qdrant_edge``."""

    def check(entry: Entry, report: Report) -> None:
        edge = qd.edge_module()
        if edge is None:
            report.skipped(
                "deep",
                "the Python module qdrant_edge is not importable by %s on the managed host; install the "
                "qdrant-edge-py package for that interpreter to load the snapshots" % sys.executable,
            )
            return
        scratch = tempfile.mkdtemp(prefix=".qdrant-deep-check.", dir=workdir or os.path.dirname(entry.path))
        counts: dict[str, int] = {}
        manifest: dict[str, t.Any] | None = None
        try:
            manifest = _deep_pass(edge, entry, scratch, counts)
        except BackupError as exc:
            report.failed("deep", exc.msg)
            return
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        manifest = qd.with_source_counts(manifest, entry.manifest)
        problems = []
        measured: dict[str, dict[str, t.Any]] = {}
        for item in manifest["collections"]:
            key = "%s/%s" % (item.get("container", ""), item["member"])
            if key not in counts:
                problems.append("collection %s: its snapshot was not found" % item["name"])
                continue
            measured[item["name"]] = {"points_count": counts[key]}
            problem = qd.count_problem(item, counts[key])
            if problem:
                problems.append(problem + " once loaded with Qdrant Edge")
        if problems:
            report.failed("deep", "; ".join(problems))
        else:
            report.passed("deep")
            report.measured = {
                "server_version": (manifest.get("server") or {}).get("version"),
                "kind": manifest["kind"],
                "collections": measured,
                "collection_count": len(measured),
                "total_points": sum(c["points_count"] for c in measured.values()),
            }
            report.notes.append(
                "%s: loaded %d collection snapshot(s) with Qdrant Edge, %d points, as the manifest says"
                % (entry.name, len(counts), sum(counts.values()))
            )

    return check


def _deep_pass(edge: t.Any, entry: Entry, scratch: str, counts: dict[str, int]) -> dict[str, t.Any]:
    """One read of the bundle: count the points of every snapshot, read the manifest."""
    manifest: dict[str, t.Any] | None = None

    def load(container: str, name: str, stream: t.BinaryIO) -> None:
        work = tempfile.mkdtemp(dir=scratch)
        try:
            counts["%s/%s" % (container, name)] = qd.points_in_snapshot(edge, stream, work)
        except VerifyError as exc:
            raise VerifyError("%s: %s" % (name, exc.msg)) from None
        finally:
            shutil.rmtree(work, ignore_errors=True)

    try:
        with tarfile.open(fileobj=t.cast(t.IO[bytes], qd.ChunkStream(ArtifactReader(entry.path).chunks())), mode="r|") as bundle:
            for member in bundle:
                if not member.isfile():
                    continue
                source = t.cast(t.BinaryIO, bundle.extractfile(member))
                if member.name == qd.MANIFEST_MEMBER:
                    manifest = qd.check_manifest(json.loads(source.read(qd.MANIFEST_LIMIT).decode("utf-8")))
                elif member.name.startswith(qd.FULL_DIR):
                    with tarfile.open(fileobj=source, mode="r|") as full:
                        for inner in full:
                            if inner.isfile() and inner.name.endswith(".snapshot"):
                                load(member.name, inner.name, t.cast(t.BinaryIO, full.extractfile(inner)))
                else:
                    load("", member.name, source)
    except (tarfile.TarError, ValueError, UnicodeDecodeError) as exc:
        raise VerifyError("the bundle cannot be read (%s)" % exc) from None
    if manifest is None:
        loaded = [k[1:] for k in counts if k.startswith("/")]
        if not qd.is_legacy_bundle(loaded):
            raise VerifyError("the bundle has no manifest.json")
        manifest = qd.legacy_manifest(loaded)  # a tar of snapshots made by the guide's scripts
    return manifest


def info(catalog_: Catalog, rules: Rules, level: str, now: datetime.datetime | None = None) -> dict[str, t.Any]:
    deep = deep_check() if level == "deep" else None
    return _ops.inspect(catalog_, rules, level, qd.BundleCheck, now, deep)


def adopt(
    catalog_: Catalog, rules: Rules, check_mode: bool, lock_timeout: float = 600.0, file_mode: int = 0o600,
    now: datetime.datetime | None = None,
) -> dict[str, t.Any]:
    """Adopt the legacy bundles (tars of collection snapshots): each snapshot is loaded with
    Qdrant Edge and its points counted; the counts are recorded."""
    spec = _adopt.AdoptSpec(
        catalog=catalog_,
        content=qd.BundleCheck,
        deep=deep_check(),
        fmt=FORMATS[qd.KIND_COLLECTIONS],
        rules=rules,
        lock_timeout=lock_timeout,
        file_mode=file_mode,
    )
    return _adopt.adopt(spec, check_mode, now)


# -- restore -------------------------------------------------------------------------------


@dataclasses.dataclass
class RestoreRequest:
    conn: qd.Connection
    spec: _restore.RestoreSpec
    collections: t.Sequence[str] = ()


class Restore:
    """The Qdrant steps of the shared restore flow (``_restore``), through the REST API only.

    accept: the version rule, and the collections to restore. The safety backup (a bundle of
    the collections about to be replaced) is the rollback point: Qdrant recovers a snapshot
    in place, so there is no staging. swap: for each collection, upload its snapshot
    (``priority=snapshot``, ``checksum``), recreate its aliases, delete the uploaded file from
    the server. measure: each collection's points count.
    """

    store = QDRANT.store
    staged = False
    keeps_previous = False
    checks_while_loading = False  # it loads in place: the artifact is read whole before any change

    def __init__(self, req: RestoreRequest) -> None:
        self.req = req
        self.client = qd.Client(req.conn)
        self.check = qd.BundleCheck()
        self.selected: list[dict[str, t.Any]] = []
        self.replaced: list[str] = []
        self.done: list[dict[str, t.Any]] = []
        self.result: dict[str, t.Any] = {}
        self._plan: _restore.Plan | None = None

    def run(self, check_mode: bool) -> dict[str, t.Any]:
        return _restore.restore(self.req.spec, self, check_mode)

    def plan(self) -> _restore.Plan:
        self.server = str(self.client.server()["version"])
        self.existing = self.client.collections()  # proves the key works before anything else
        self.result = {"server_version": self.server, "collections": None}
        self._plan = _restore.Plan(self.req.conn.describe(), False, self.result)
        return self._plan

    def content(self) -> qd.BundleCheck:
        self.check = qd.BundleCheck()
        return self.check

    def _refuse_version(self, made: str | None) -> None:
        problem = qd.version_problem(made, self.server) if made else None
        if problem:
            raise RestoreError("refusing to restore onto %s, nothing was changed: %s" % (self.req.conn.describe(), problem))

    def accept(self, entry: Entry, check: t.Any) -> str:
        self._refuse_version(((entry.manifest or {}).get("versions") or {}).get("server"))
        self.manifest = qd.with_source_counts(t.cast(t.Dict[str, t.Any], self.check.manifest), entry.manifest)
        self._refuse_version(self.manifest["server"].get("version"))
        entries = {e["name"]: e for e in self.manifest["collections"]}
        wanted = list(dict.fromkeys(self.req.collections)) or sorted(entries)
        missing = [n for n in wanted if n not in entries]
        if missing:
            raise ConfigError(
                "the backup has no collection %s; it has: %s" % (", ".join(missing), ", ".join(sorted(entries)) or "none")
            )
        self.selected = [entries[n] for n in wanted]
        self.replaced = [n for n in wanted if n in self.existing]
        t.cast(_restore.Plan, self._plan).current = bool(self.replaced)
        return "; would restore %s%s" % (", ".join(wanted), "; would replace %s" % ", ".join(self.replaced) if self.replaced else "")

    def safety_backup(self, spec: _restore.RestoreSpec) -> dict[str, t.Any]:
        backup = spec.safety_spec(FORMATS[qd.KIND_COLLECTIONS], qd.BundleCheck)
        plan = survey(self.client, self.replaced, False)
        producer = BundleProducer(self.client, plan, backup.catalog.directory, spec.file_mode)
        return _ops.make_backup(backup, producer, plan.versions())["artifact"]

    def prepare(self, entry: Entry) -> None:
        pass  # Qdrant recovers in place: the safety backup is the way back

    def swap(self, entry: Entry) -> None:
        def handle(item: t.Mapping[str, t.Any], stream: t.BinaryIO, size: int) -> None:
            self.done.append(self._restore_one(item, stream, size))

        qd.read_bundle(ArtifactReader(entry.path).chunks(), self.manifest, {e["name"] for e in self.selected}, handle)
        missing = [e["name"] for e in self.selected if e["name"] not in {d["name"] for d in self.done}]
        if missing:
            raise RestoreError("the bundle did not hold the snapshot of %s" % ", ".join(missing))
        order = [e["name"] for e in self.selected]
        self.result["collections"] = sorted(self.done, key=lambda d: order.index(d["name"]))

    def measure(self, entry: Entry) -> list[_restore.Count]:
        counts = []
        for item in self.selected:
            expected = qd.count_range(item)
            if expected is not None:
                actual = next(d["points_count"] for d in self.done if d["name"] == item["name"])
                counts.append(_restore.Count("collection %s" % item["name"], "points", actual, expected[1], expected[0], "written to during the backup"))
        return counts

    def finish(self, keep: bool) -> None:
        kept = [c["name"] for c in self.done if not c["uploaded_snapshot_removed"]]
        if kept:
            t.cast(_restore.Plan, self._plan).notes.append("the uploaded snapshot file of %s was not found on the server to delete" % ", ".join(kept))

    def undo(self, swapped: bool) -> str:
        if swapped or not self.done:
            return ""
        return "restored so far: %s; the other collections hold the data they had" % ", ".join(d["name"] for d in self.done)

    def summary(self) -> str:
        restored = self.result["collections"] or []
        return "%s: %d points" % (", ".join(c["name"] for c in restored), sum(c["points_count"] for c in restored))

    def _restore_one(self, item: t.Mapping[str, t.Any], stream: t.BinaryIO, size: int) -> dict[str, t.Any]:
        name = item["name"]
        client = self.client
        try:
            client.upload(name, stream, size, item["snapshot"], item["sha256"])
        finally:
            removed = self._remove_upload(name, item["snapshot"])
        self._aliases(name, item.get("aliases") or [])
        return {"name": name, "points_count": client.count(name), "aliases": list(item.get("aliases") or []), "uploaded_snapshot_removed": removed}

    def _remove_upload(self, collection: str, filename: str) -> bool:
        """The server keeps an uploaded snapshot file: delete it (by the name we gave it)."""
        try:
            if filename in {s["name"] for s in self.client.snapshots(collection)}:
                self.client.delete_snapshot(collection, filename)
                return True
        except BackupError:
            pass
        return False

    def _aliases(self, collection: str, aliases: t.Sequence[str]) -> None:
        current = self.client.aliases()
        actions: list[dict[str, t.Any]] = []
        for alias in aliases:
            target = current.get(alias)
            if target == collection:
                continue
            if target is not None:
                actions.append({"delete_alias": {"alias_name": alias}})
            actions.append({"create_alias": {"collection_name": collection, "alias_name": alias}})
        if actions:
            try:
                self.client.update_aliases(actions)
            except BackupError as exc:
                raise RestoreError("collection %s was restored but its aliases could not be recreated: %s" % (collection, exc.msg)) from exc
