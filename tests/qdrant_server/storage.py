"""On-disk storage: collections (one Qdrant Edge shard each) and aliases.

Layout under the storage directory, modelled on a single-node Qdrant::

    raft_state.json                   {"this_peer_id": N}  (the peer id used in snapshot names)
    aliases/data.json                 {"alias": "collection", ...}
    collections/<name>/config.json    collection config (+ uuid), see collection_config.py
    collections/<name>/version.info   collection storage version, "0.4.2" as in Qdrant 1.19
    collections/<name>/payload_index.json, shard_key_mapping.json
    collections/<name>/0/             shard 0: shard_config.json, replica_state.json and the
                                      Qdrant Edge shard (edge_config.json, segments/, wal/)
    snapshots/                        see snapshots.py
    .tmp/                             scratch space for snapshot building and recovery
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import tempfile
import threading
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional

import qdrant_edge as edge

from . import collection_config, errors

JsonDict = Dict[str, Any]

COLLECTION_STORAGE_VERSION = "0.4.2"
SHARD_DIR = "0"
_FORBIDDEN_NAME = re.compile(r'[<>:"/\\|?*\x00]')


def write_json(path: Path, data: Any) -> None:
    """Write JSON atomically (temp file + rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(data, handle)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def read_json(path: Path) -> Any:
    """Read a JSON file."""
    with path.open("r", encoding="utf-8") as handle:
        return json.load(handle)


def validate_collection_name(name: str) -> None:
    """Reject names Qdrant refuses (empty, too long, path characters)."""
    if not name or len(name) > 255:
        raise errors.validation_error("path parameters", "collection_name: length must be 1..255")
    match = _FORBIDDEN_NAME.search(name)
    if match or name in (".", ".."):
        char = match.group(0) if match else name
        raise errors.validation_error(
            "path parameters", f'collection_name: collection name cannot contain "{char}" char'
        )


def write_shard_metadata(shard_path: Path, peer_id: int) -> None:
    """Files Qdrant keeps beside a local shard's data."""
    write_json(shard_path / "shard_config.json", {"type": "ReplicaSet"})
    write_json(
        shard_path / "replica_state.json",
        {"is_local": True, "this_peer_id": peer_id, "peers": {str(peer_id): "Active"}},
    )


class Collection:
    """One collection: its stored config and its open Edge shard, guarded by ``lock``."""

    def __init__(self, name: str, path: Path, stored_config: JsonDict, shard: "edge.EdgeShard") -> None:
        self.name = name
        self.path = path
        self.stored_config = stored_config
        self.shard = shard
        self.lock = threading.RLock()
        self.next_operation_id = 0

    @property
    def config(self) -> JsonDict:
        """The config as the API shows it."""
        return collection_config.api_view(self.stored_config)

    @property
    def shard_path(self) -> Path:
        """Directory of shard 0."""
        return self.path / SHARD_DIR

    def take_operation_id(self) -> int:
        """Sequential operation number for ``UpdateResult.operation_id``."""
        with self.lock:
            operation_id = self.next_operation_id
            self.next_operation_id += 1
            return operation_id

    def close(self) -> None:
        """Flush and close the Edge shard."""
        with self.lock:
            self.shard.flush()
            self.shard.close()


class Storage:
    """Registry of collections and aliases on top of a storage directory."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.collections_dir = root / "collections"
        self.snapshots_dir = root / "snapshots"
        self.temp_dir = root / ".tmp"
        self.aliases_file = root / "aliases" / "data.json"
        self._lock = threading.RLock()
        self._collections: Dict[str, Collection] = {}
        self._aliases: Dict[str, str] = {}
        for directory in (self.collections_dir, self.snapshots_dir, self.temp_dir):
            directory.mkdir(parents=True, exist_ok=True)
        self.peer_id = self._load_peer_id()
        self._load()

    # -- setup -------------------------------------------------------------------------------

    def _load_peer_id(self) -> int:
        state_file = self.root / "raft_state.json"
        if state_file.exists():
            return int(read_json(state_file)["this_peer_id"])
        peer_id = random.randint(10**15, 2**53)
        write_json(state_file, {"this_peer_id": peer_id})
        return peer_id

    def _load(self) -> None:
        shutil.rmtree(self.temp_dir, ignore_errors=True)
        self.temp_dir.mkdir(parents=True, exist_ok=True)
        for path in sorted(self.collections_dir.iterdir()):
            if path.is_dir() and (path / "config.json").exists():
                stored = read_json(path / "config.json")
                shard = edge.EdgeShard.load(str(path / SHARD_DIR), collection_config.edge_config(stored))
                self._collections[path.name] = Collection(path.name, path, stored, shard)
        if self.aliases_file.exists():
            self._aliases = dict(read_json(self.aliases_file))

    def close(self) -> None:
        """Close every shard (server shutdown)."""
        with self._lock:
            for collection in self._collections.values():
                collection.close()
            self._collections.clear()

    def make_temp_dir(self, prefix: str) -> Path:
        """A fresh scratch directory on the storage volume (same file system for renames)."""
        return Path(tempfile.mkdtemp(prefix=prefix, dir=self.temp_dir))

    # -- collections -------------------------------------------------------------------------

    def resolve(self, name: str) -> str:
        """Collection name behind ``name``, following an alias if there is one."""
        with self._lock:
            return self._aliases.get(name, name)

    def get(self, name: str) -> Collection:
        """The collection named ``name`` (or aliased), else Qdrant's 404."""
        with self._lock:
            real = self._aliases.get(name, name)
            collection = self._collections.get(real)
            if collection is None:
                raise errors.collection_not_found(name)
            return collection

    def exists(self, name: str) -> bool:
        """``GET /collections/{name}/exists``."""
        with self._lock:
            return self._aliases.get(name, name) in self._collections

    def names(self) -> List[str]:
        """Collection names, sorted."""
        with self._lock:
            return sorted(self._collections)

    def collections(self) -> Iterator[Collection]:
        """Snapshot of the current collections."""
        with self._lock:
            return iter(list(self._collections.values()))

    def create(self, name: str, config: JsonDict, shard_source: Optional[Path] = None) -> Collection:
        """Create a collection; ``shard_source`` is an already unpacked shard to adopt."""
        validate_collection_name(name)
        with self._lock:
            if name in self._collections:
                raise errors.already_exists(f"Collection `{name}` already exists!")
            if name in self._aliases:
                raise errors.already_exists(f"Alias with name `{name}` already exists!")
            stored = collection_config.with_uuid(config)
            path = self.collections_dir / name
            staging = self.make_temp_dir(f"col-{name}-create-")
            try:
                shard_path = staging / SHARD_DIR
                if shard_source is not None:
                    shutil.move(str(shard_source), str(shard_path))
                    shard = edge.EdgeShard.load(str(shard_path), collection_config.edge_config(stored))
                else:
                    shard = edge.EdgeShard.create(str(shard_path), collection_config.edge_config(stored))
                shard.close()
                write_shard_metadata(shard_path, self.peer_id)
                write_json(staging / "config.json", stored)
                (staging / "version.info").write_text(COLLECTION_STORAGE_VERSION, encoding="utf-8")
                write_json(staging / "payload_index.json", {"schema": {}})
                write_json(staging / "shard_key_mapping.json", {})
                if path.exists():
                    shutil.rmtree(path)
                os.replace(staging, path)
            except BaseException:
                shutil.rmtree(staging, ignore_errors=True)
                raise
            shard = edge.EdgeShard.load(str(path / SHARD_DIR), collection_config.edge_config(stored))
            collection = Collection(name, path, stored, shard)
            self._collections[name] = collection
            return collection

    def delete(self, name: str) -> bool:
        """Delete a collection and the aliases pointing at it; False if it did not exist."""
        with self._lock:
            collection = self._collections.pop(name, None)
            if collection is None:
                return False
            self._aliases = {a: c for a, c in self._aliases.items() if c != name}
            write_json(self.aliases_file, self._aliases)
        with collection.lock:
            collection.shard.close()
            trash = self.make_temp_dir(f"col-{name}-deleted-")
            os.replace(collection.path, trash / "collection")
        shutil.rmtree(trash, ignore_errors=True)
        return True

    def replace_shard(self, collection: Collection, new_shard: Path) -> None:
        """Swap shard 0 of ``collection`` for the unpacked shard at ``new_shard``.

        The collection keeps its own config, as Qdrant does when a snapshot is recovered into
        an existing collection.
        """
        edge_cfg = collection_config.edge_config(collection.stored_config)
        write_shard_metadata(new_shard, self.peer_id)
        probe = edge.EdgeShard.load(str(new_shard), edge_cfg)
        probe.close()
        with collection.lock:
            collection.shard.flush()
            collection.shard.close()
            trash = self.make_temp_dir(f"col-{collection.name}-old-shard-")
            os.replace(collection.shard_path, trash / SHARD_DIR)
            try:
                os.replace(new_shard, collection.shard_path)
                collection.shard = edge.EdgeShard.load(str(collection.shard_path), edge_cfg)
            except BaseException:
                if collection.shard_path.exists():
                    shutil.rmtree(collection.shard_path)
                os.replace(trash / SHARD_DIR, collection.shard_path)
                collection.shard = edge.EdgeShard.load(str(collection.shard_path), edge_cfg)
                raise
        shutil.rmtree(trash, ignore_errors=True)

    # -- aliases -----------------------------------------------------------------------------

    def aliases(self, collection: Optional[str] = None) -> List[JsonDict]:
        """Alias descriptions, optionally only those of one collection."""
        with self._lock:
            return [
                {"alias_name": alias, "collection_name": target}
                for alias, target in sorted(self._aliases.items())
                if collection is None or target == collection
            ]

    def apply_alias_actions(self, actions: List[JsonDict]) -> None:
        """Apply ``create_alias`` / ``delete_alias`` / ``rename_alias`` atomically."""
        with self._lock:
            aliases = dict(self._aliases)
            for action in actions:
                _apply_alias_action(action, aliases, self._collections)
            self._aliases = aliases
            write_json(self.aliases_file, aliases)


def _apply_alias_action(action: Any, aliases: Dict[str, str], collections: Dict[str, Collection]) -> None:
    if not isinstance(action, dict) or len(action) != 1:
        raise errors.json_error("data did not match any variant of untagged enum AliasOperations")
    kind, spec = next(iter(action.items()))
    if not isinstance(spec, dict):
        raise errors.json_error(f"{kind}: expected an object")
    if kind == "create_alias":
        alias, target = spec.get("alias_name"), spec.get("collection_name")
        if not isinstance(alias, str) or not isinstance(target, str):
            raise errors.json_error("create_alias: missing field `alias_name` or `collection_name`")
        if target not in collections:
            raise errors.collection_not_found(target)
        if alias in collections:
            raise errors.already_exists(f"Collection `{alias}` already exists!")
        aliases[alias] = target
    elif kind == "delete_alias":
        alias = spec.get("alias_name")
        if alias not in aliases:
            raise errors.not_found(f"Alias `{alias}` doesn't exist!")
        del aliases[alias]
    elif kind == "rename_alias":
        old, new = spec.get("old_alias_name"), spec.get("new_alias_name")
        if old not in aliases:
            raise errors.not_found(f"Alias `{old}` doesn't exist!")
        if not isinstance(new, str):
            raise errors.json_error("rename_alias: missing field `new_alias_name`")
        aliases[new] = aliases.pop(old)
    else:
        raise errors.json_error(f"unknown variant `{kind}`")
