"""Collection and full-storage snapshots in Qdrant's layout, built from Qdrant Edge shards.

Files (as a real single-node Qdrant)::

    snapshots/<collection>/<collection>-<peer_id>-<YYYY-MM-DD-HH-MM-SS>.snapshot
    snapshots/<collection>/<name>.snapshot.checksum      sha256 hex of the snapshot file
    snapshots/full-snapshot-<YYYY-MM-DD-HH-MM-SS>.snapshot (+ .checksum)

A collection snapshot is an uncompressed tar laid out like Qdrant's
(``Collection::create_snapshot``)::

    config.json  version.info  shard_key_mapping.json  payload_index.json
    0/shard_config.json  0/replica_state.json
    0/segments/<segment-uuid>.tar    one tar per segment: snapshot/files/<segment files>
    0/wal/...                        the shard's write-ahead log
    0/edge_config.json               Qdrant Edge's own shard config (not in server snapshots)

Qdrant Edge has no call that writes a snapshot, so the tar is assembled here from the Edge
shard's files (Edge segments use the server's segment format). Recovery hands shard 0 to
``EdgeShard.unpack_snapshot`` - the same segment restore code Qdrant runs - and loads the result.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import io
import json
import os
import re
import shutil
import tarfile
import time
from pathlib import Path
from typing import Any, BinaryIO, Dict, Iterable, List, Optional, Tuple

import qdrant_edge as edge

from . import collection_config, errors
from .faults import Faults
from .storage import SHARD_DIR, Collection, Storage, read_json

JsonDict = Dict[str, Any]

SNAPSHOT_SUFFIX = ".snapshot"
CHECKSUM_SUFFIX = ".checksum"
FULL_SNAPSHOT_PREFIX = "full-snapshot"
PRIORITIES = ("no_sync", "snapshot", "replica")
_CHUNK = 1024 * 1024
_SHA256_HEX = re.compile(r"^[0-9a-fA-F]{64}$")


def utc_stamp(now: Optional[float] = None) -> str:
    """``YYYY-MM-DD-HH-MM-SS`` in UTC, the time part of Qdrant snapshot names."""
    moment = _dt.datetime.fromtimestamp(time.time() if now is None else now, tz=_dt.timezone.utc)
    return moment.strftime("%Y-%m-%d-%H-%M-%S")


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def is_sha256(value: str) -> bool:
    """Qdrant validates checksum parameters as 64 hex digits."""
    return bool(_SHA256_HEX.match(value))


def checksum_path(snapshot: Path) -> Path:
    """Sidecar holding the snapshot's sha256."""
    return snapshot.with_name(snapshot.name + CHECKSUM_SUFFIX)


def describe(snapshot: Path) -> JsonDict:
    """``SnapshotDescription`` of a snapshot file."""
    stat = snapshot.stat()
    created = _dt.datetime.fromtimestamp(stat.st_mtime, tz=_dt.timezone.utc)
    sidecar = checksum_path(snapshot)
    checksum = sidecar.read_text(encoding="utf-8").strip() if sidecar.exists() else None
    return {
        "name": snapshot.name,
        "creation_time": created.strftime("%Y-%m-%dT%H:%M:%S"),
        "size": stat.st_size,
        "checksum": checksum,
    }


def list_snapshots(directory: Path) -> List[JsonDict]:
    """Descriptions of the ``*.snapshot`` files in ``directory``, oldest first."""
    if not directory.is_dir():
        return []
    files = [p for p in directory.iterdir() if p.is_file() and p.name.endswith(SNAPSHOT_SUFFIX)]
    descriptions = [describe(p) for p in files]
    return sorted(descriptions, key=lambda d: (d["creation_time"], d["name"]))


def snapshot_file(directory: Path, name: str) -> Path:
    """Path of snapshot ``name`` inside ``directory``; Qdrant's 404 when absent or outside."""
    candidate = directory / name
    if (
        not name
        or "/" in name
        or "\\" in name
        or name in (".", "..")
        or not candidate.is_file()
        or candidate.resolve().parent != directory.resolve()
    ):
        raise errors.not_found(f"Snapshot {name} not found")
    return candidate


def delete_snapshot(path: Path) -> bool:
    """Remove a snapshot and its checksum sidecar."""
    path.unlink()
    sidecar = checksum_path(path)
    if sidecar.exists():
        sidecar.unlink()
    return True


def collection_snapshot_dir(storage: Storage, collection_name: str) -> Path:
    """``snapshots/<collection>``."""
    return storage.snapshots_dir / collection_name


# -- creating ---------------------------------------------------------------------------------


def _corrupt(checksum: str) -> str:
    last = "0" if checksum[-1] != "0" else "1"
    return checksum[:-1] + last


def _publish(staged: Path, final: Path, faults: Faults) -> JsonDict:
    """Write the checksum sidecar, then move the snapshot into place (never one without other)."""
    checksum = sha256_file(staged)
    if faults.snapshot().wrong_checksum:
        checksum = _corrupt(checksum)
    final.parent.mkdir(parents=True, exist_ok=True)
    sidecar = checksum_path(final)
    sidecar_tmp = staged.with_name(staged.name + CHECKSUM_SUFFIX)
    sidecar_tmp.write_text(checksum, encoding="utf-8")
    os.replace(sidecar_tmp, sidecar)
    os.replace(staged, final)
    return describe(final)


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = int(time.time())
    info.mode = 0o644
    tar.addfile(info, io.BytesIO(data))


def _files_under(root: Path) -> Iterable[Path]:
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for filename in sorted(filenames):
            yield Path(dirpath) / filename


def _segment_tar(segment_dir: Path, target: Path) -> None:
    """One segment as Qdrant's "regular" segment snapshot: ``snapshot/files/<path>``."""
    with tarfile.open(target, "w", format=tarfile.GNU_FORMAT) as tar:
        for path in _files_under(segment_dir):
            tar.add(str(path), arcname=f"snapshot/files/{path.relative_to(segment_dir).as_posix()}")


def _add_dir_entry(tar: tarfile.TarFile, name: str) -> None:
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE
    info.mode = 0o755
    info.mtime = int(time.time())
    tar.addfile(info)


def _write_collection_tar(collection: Collection, target: Path, scratch: Path) -> None:
    shard = collection.shard_path
    with collection.lock:
        collection.shard.flush()
        with tarfile.open(target, "w", format=tarfile.GNU_FORMAT) as tar:
            _add_dir_entry(tar, SHARD_DIR)
            _add_dir_entry(tar, f"{SHARD_DIR}/segments")
            segments = shard / "segments"
            for segment in sorted(p for p in segments.iterdir() if p.is_dir() and not p.name.startswith(".")):
                segment_tar = scratch / f"{segment.name}.tar"
                _segment_tar(segment, segment_tar)
                tar.add(str(segment_tar), arcname=f"{SHARD_DIR}/segments/{segment.name}.tar")
                segment_tar.unlink()
            _add_dir_entry(tar, f"{SHARD_DIR}/wal")
            for path in sorted((shard / "wal").iterdir()):
                if path.is_file() and path.name != ".wal":
                    tar.add(str(path), arcname=f"{SHARD_DIR}/wal/{path.name}")
            for name in ("edge_config.json", "replica_state.json", "shard_config.json"):
                if (shard / name).exists():
                    tar.add(str(shard / name), arcname=f"{SHARD_DIR}/{name}")
            for name in ("version.info", "config.json", "shard_key_mapping.json", "payload_index.json"):
                tar.add(str(collection.path / name), arcname=name)


def create_collection_snapshot(storage: Storage, collection_name: str, faults: Faults) -> JsonDict:
    """``POST /collections/{name}/snapshots``: build, checksum and publish a snapshot."""
    collection = storage.get(collection_name)
    delay = faults.snapshot().snapshot_delay
    if delay > 0:
        time.sleep(delay)
    name = f"{collection.name}-{storage.peer_id}-{utc_stamp()}{SNAPSHOT_SUFFIX}"
    scratch = storage.make_temp_dir(f"{name}-target-")
    try:
        staged = scratch / name
        _write_collection_tar(collection, staged, scratch)
        return _publish(staged, collection_snapshot_dir(storage, collection.name) / name, faults)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def create_full_snapshot(storage: Storage, faults: Faults) -> JsonDict:
    """``POST /snapshots``: snapshot every collection, then tar them with a mapping config."""
    created: List[Tuple[str, JsonDict]] = []
    for member in storage.collections():
        created.append((member.name, create_collection_snapshot(storage, member.name, faults)))
    stamp = utc_stamp()
    name = f"{FULL_SNAPSHOT_PREFIX}-{stamp}{SNAPSHOT_SUFFIX}"
    aliases = {a["alias_name"]: a["collection_name"] for a in storage.aliases()}
    config = {
        "collections_mapping": {collection: desc["name"] for collection, desc in created},
        "collections_aliases": aliases,
    }
    scratch = storage.make_temp_dir(f"{name}-target-")
    try:
        staged = scratch / name
        with tarfile.open(staged, "w", format=tarfile.GNU_FORMAT) as tar:
            for collection, desc in created:
                tar.add(str(collection_snapshot_dir(storage, collection) / desc["name"]), arcname=desc["name"])
            _add_bytes(tar, "config.json", json.dumps(config, indent=2).encode("utf-8"))
        return _publish(staged, storage.snapshots_dir / name, faults)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


# -- recovering -------------------------------------------------------------------------------


def _member_parts(member: tarfile.TarInfo) -> List[str]:
    parts = [p for p in member.name.replace("\\", "/").split("/") if p not in ("", ".")]
    if member.name.startswith("/") or ".." in parts:
        raise errors.service_error(f"File IO error: unsafe path in snapshot archive: {member.name}")
    return parts


def _split_collection_snapshot(snapshot: Path, root: Path, shard_tar: Path) -> None:
    """Extract the collection-level files to ``root`` and re-pack shard 0 as a shard snapshot."""
    root.mkdir(parents=True, exist_ok=True)
    found_shard = False
    try:
        with tarfile.open(snapshot, "r:") as archive, tarfile.open(shard_tar, "w", format=tarfile.GNU_FORMAT) as shard:
            for member in archive:
                parts = _member_parts(member)
                if not parts:
                    continue
                if member.issym() or member.islnk():
                    raise errors.service_error(f"File IO error: links are not allowed in snapshots: {member.name}")
                if parts[0] == SHARD_DIR:
                    if len(parts) == 1:
                        continue
                    found_shard = True
                    inner = tarfile.TarInfo("/".join(parts[1:]))
                    inner.type, inner.mode, inner.mtime, inner.size = (
                        member.type,
                        member.mode,
                        member.mtime,
                        member.size,
                    )
                    shard.addfile(inner, archive.extractfile(member) if member.isfile() else None)
                elif parts[0].isdigit():
                    raise errors.unsupported("snapshots with more than one shard")
                elif member.isfile() and len(parts) == 1:
                    source = archive.extractfile(member)
                    assert source is not None
                    with (root / parts[0]).open("wb") as out:
                        shutil.copyfileobj(source, out, _CHUNK)
    except tarfile.TarError:
        raise errors.service_error("File IO error: failed to iterate over archive") from None
    if not found_shard:
        raise errors.service_error(f"Can't read shard config at {root / SHARD_DIR}")


def _snapshot_config(root: Path) -> JsonDict:
    try:
        stored = read_json(root / "config.json")
    except FileNotFoundError:
        raise errors.service_error("No such file or directory (os error 2)") from None
    except ValueError as exc:
        raise errors.service_error(f"Json error: {exc}") from None
    return collection_config.api_view(stored)


def recover_collection(storage: Storage, collection_name: str, snapshot: Path) -> bool:
    """Recover ``collection_name`` from a collection snapshot file (upload or location).

    A missing collection is created from the snapshot's config. An existing one must have the
    same ``params.vectors``; its data is replaced and its own config kept, as in Qdrant.
    """
    name = storage.resolve(collection_name)
    scratch = storage.make_temp_dir(f"col-{name}-recovery-")
    try:
        root, shard_tar, shard_dir = scratch / "collection", scratch / "shard.tar", scratch / "shard"
        _split_collection_snapshot(snapshot, root, shard_tar)
        snapshot_cfg = _snapshot_config(root)
        try:
            edge.EdgeShard.unpack_snapshot(str(shard_tar), str(shard_dir))
        except Exception as exc:  # Edge raises plain Exception subclasses
            raise errors.service_error(f"Failed to restore snapshot: {exc}") from None
        shard_tar.unlink()
        if not storage.exists(name):
            storage.create(name, snapshot_cfg, shard_source=shard_dir)
            return True
        collection = storage.get(name)
        if not collection_config.same_vectors(collection.config, snapshot_cfg):
            raise errors.bad_input(
                "Snapshot is not compatible with existing collection: Collection vectors: "
                f"{json.dumps(collection.config['params']['vectors'])} "
                f"Snapshot Vectors: {json.dumps(snapshot_cfg['params']['vectors'])}"
            )
        storage.replace_shard(collection, shard_dir)
        return True
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def copy_stream(source: BinaryIO, target: Path, digest: Optional[Any] = None, length: Optional[int] = None) -> int:
    """Copy a stream to a file in chunks, updating ``digest``; returns bytes written."""
    written = 0
    with target.open("wb") as out:
        while length is None or written < length:
            want = _CHUNK if length is None else min(_CHUNK, length - written)
            chunk = source.read(want)
            if not chunk:
                break
            out.write(chunk)
            if digest is not None:
                digest.update(chunk)
            written += len(chunk)
    return written
