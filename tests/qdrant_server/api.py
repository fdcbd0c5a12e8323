"""The Qdrant REST endpoints the test server implements, independent of the HTTP plumbing."""

from __future__ import annotations

import hashlib
import logging
import re
import shutil
import threading
import urllib.error
import urllib.parse
import urllib.request
import uuid
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Pattern, Tuple

import qdrant_edge as edge

from . import bodies, collection_config, errors, points, snapshots
from .config import ServerConfig
from .faults import Faults
from .messages import Accepted, FileDownload, JsonResult, RawJson, Request, Text
from .storage import Storage

LOG = logging.getLogger("qdrant_test_server")

Handler = Callable[[Request], Any]

UPDATE_MODES = {"upsert": "Upsert", "insert_only": "InsertOnly", "update_only": "UpdateOnly"}


class Route:
    """One endpoint: method, path template and whether a read-only key may call it."""

    def __init__(self, method: str, template: str, handler: Handler, read_only: bool = False) -> None:
        self.method = method
        self.template = template
        self.handler = handler
        self.read_only = read_only or method in ("GET", "HEAD")
        pattern = re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", template)
        self.regex: Pattern[str] = re.compile(f"^{pattern}$")

    def match(self, method: str, path: str) -> Optional[Dict[str, str]]:
        """Path parameters if this route serves ``method path``."""
        if method != self.method and not (method == "HEAD" and self.method == "GET"):
            return None
        found = self.regex.match(path)
        if not found:
            return None
        return {k: urllib.parse.unquote(v) for k, v in found.groupdict().items()}


class QdrantApi:
    """Endpoint implementations; ``routes`` lists them for the HTTP layer."""

    def __init__(self, config: ServerConfig, storage: Storage, faults: Faults) -> None:
        self.config = config
        self.storage = storage
        self.faults = faults
        self.routes: List[Route] = self._routes()

    def _routes(self) -> List[Route]:
        r = Route
        return [
            r("GET", "/", self.root),
            r("GET", "/healthz", lambda req: Text("healthz check passed")),
            r("GET", "/livez", lambda req: Text("healthz check passed")),
            r("GET", "/readyz", lambda req: Text("all shards are ready")),
            r("GET", "/collections", self.list_collections),
            r("POST", "/collections/aliases", self.update_aliases),
            r("GET", "/aliases", self.list_aliases),
            r("GET", "/collections/{collection_name}", self.get_collection),
            r("PUT", "/collections/{collection_name}", self.create_collection),
            r("DELETE", "/collections/{collection_name}", self.delete_collection),
            r("GET", "/collections/{collection_name}/exists", self.collection_exists),
            r("GET", "/collections/{collection_name}/aliases", self.collection_aliases),
            r("PUT", "/collections/{collection_name}/points", self.upsert_points),
            r("POST", "/collections/{collection_name}/points", self.get_points, read_only=True),
            r("POST", "/collections/{collection_name}/points/delete", self.delete_points),
            r("POST", "/collections/{collection_name}/points/scroll", self.scroll_points, read_only=True),
            r("POST", "/collections/{collection_name}/points/count", self.count_points, read_only=True),
            r("GET", "/collections/{collection_name}/points/{id}", self.get_point),
            r("GET", "/collections/{collection_name}/snapshots", self.list_snapshots),
            r("POST", "/collections/{collection_name}/snapshots", self.create_snapshot),
            r("POST", "/collections/{collection_name}/snapshots/upload", self.upload_snapshot),
            r("PUT", "/collections/{collection_name}/snapshots/recover", self.recover_snapshot),
            r("GET", "/collections/{collection_name}/snapshots/{snapshot_name}", self.download_snapshot),
            r("DELETE", "/collections/{collection_name}/snapshots/{snapshot_name}", self.delete_snapshot),
            r("GET", "/snapshots", self.list_full_snapshots),
            r("POST", "/snapshots", self.create_full_snapshot),
            r("GET", "/snapshots/{snapshot_name}", self.download_full_snapshot),
            r("DELETE", "/snapshots/{snapshot_name}", self.delete_full_snapshot),
            r("GET", "/__faults", self.get_faults),
            r("POST", "/__faults", self.set_faults),
            r("DELETE", "/__faults", self.reset_faults),
        ]

    # -- helpers -----------------------------------------------------------------------------

    def _in_background(self, what: str, work: Callable[[], Any]) -> Accepted:
        """Run ``work`` after answering 202, as Qdrant does for ``wait=false``."""

        def runner() -> None:
            try:
                work()
            except errors.ApiError as exc:
                LOG.warning("background %s failed: %s", what, exc.message)
            except Exception:  # keep the server alive, report the failure
                LOG.exception("background %s failed", what)

        threading.Thread(target=runner, name=f"bg-{what}", daemon=True).start()
        return Accepted()

    def _wait_or_accept(self, req: Request, what: str, work: Callable[[], Any]) -> Any:
        if req.query_bool("wait", True):
            return JsonResult(work())
        return self._in_background(what, work)

    def _update_result(self, collection: Any, wait: bool) -> JsonResult:
        return JsonResult(
            {"operation_id": collection.take_operation_id(), "status": "completed" if wait else "acknowledged"}
        )

    # -- service -----------------------------------------------------------------------------

    def root(self, req: Request) -> RawJson:
        return RawJson(
            {"title": "qdrant - vector search engine", "version": self.config.version, "commit": self.config.commit}
        )

    def get_faults(self, req: Request) -> RawJson:
        return RawJson(self.faults.as_dict())

    def set_faults(self, req: Request) -> RawJson:
        try:
            self.faults.update(req.json())
        except ValueError as exc:
            raise errors.bad_request(str(exc)) from None
        return RawJson(self.faults.as_dict())

    def reset_faults(self, req: Request) -> RawJson:
        self.faults.reset()
        return RawJson(self.faults.as_dict())

    # -- collections -------------------------------------------------------------------------

    def list_collections(self, req: Request) -> JsonResult:
        return JsonResult({"collections": [{"name": name} for name in self.storage.names()]})

    def get_collection(self, req: Request) -> JsonResult:
        collection = self.storage.get(req.params["collection_name"])
        with collection.lock:
            info = collection.shard.info()
        return JsonResult(
            {
                "status": "green",
                "optimizer_status": "ok",
                "indexed_vectors_count": info.indexed_vectors_count,
                "points_count": info.points_count,
                "segments_count": info.segments_count,
                "config": collection.config,
                "payload_schema": {},
                "update_queue": {"length": 0},
            }
        )

    def create_collection(self, req: Request) -> JsonResult:
        config = collection_config.config_from_create_request(req.json())
        self.storage.create(req.params["collection_name"], config)
        return JsonResult(True)

    def delete_collection(self, req: Request) -> JsonResult:
        return JsonResult(self.storage.delete(req.params["collection_name"]))

    def collection_exists(self, req: Request) -> JsonResult:
        return JsonResult({"exists": self.storage.exists(req.params["collection_name"])})

    def update_aliases(self, req: Request) -> JsonResult:
        body = req.json()
        if not isinstance(body, dict) or not isinstance(body.get("actions"), list):
            raise errors.json_error("missing field `actions`")
        self.storage.apply_alias_actions(body["actions"])
        return JsonResult(True)

    def list_aliases(self, req: Request) -> JsonResult:
        return JsonResult({"aliases": self.storage.aliases()})

    def collection_aliases(self, req: Request) -> JsonResult:
        collection = self.storage.get(req.params["collection_name"])
        return JsonResult({"aliases": self.storage.aliases(collection.name)})

    # -- points ------------------------------------------------------------------------------

    def upsert_points(self, req: Request) -> JsonResult:
        wait = req.query_bool("wait", False)
        collection = self.storage.get(req.params["collection_name"])
        body = req.json()
        if not isinstance(body, dict):
            raise errors.json_error("data did not match any variant of untagged enum PointInsertOperations")
        points.reject_filter(body, ("update_filter", "shard_key"))
        mode = body.get("update_mode")
        if mode is not None and mode not in UPDATE_MODES:
            raise errors.json_error(f"unknown variant `{mode}`, expected one of `upsert`, `insert_only`, `update_only`")
        with collection.lock:
            config = collection.config
            if "batch" in body:
                new_points = points.parse_batch(body, config)
            elif "points" in body:
                new_points = points.parse_points_list(body, config)
            else:
                raise errors.json_error("data did not match any variant of untagged enum PointInsertOperations")
            update_mode = getattr(edge.UpdateMode, UPDATE_MODES[mode]) if mode else None
            self._apply(collection, edge.UpdateOperation.upsert_points(new_points, update_mode=update_mode))
        return self._update_result(collection, wait)

    def _apply(self, collection: Any, operation: Any) -> None:
        try:
            collection.shard.update(operation)
            collection.shard.flush()
        except Exception as exc:  # Edge reports bad input as plain exceptions
            raise errors.bad_input(str(exc)) from None

    def delete_points(self, req: Request) -> JsonResult:
        wait = req.query_bool("wait", False)
        collection = self.storage.get(req.params["collection_name"])
        body = req.json()
        if not isinstance(body, dict):
            raise errors.json_error("data did not match any variant of untagged enum PointsSelector")
        points.reject_filter(body, ("filter", "shard_key"))
        ids = points.parse_ids(body.get("points"), "points")
        with collection.lock:
            self._apply(collection, edge.UpdateOperation.delete_points(ids))
        return self._update_result(collection, wait)

    def get_points(self, req: Request) -> JsonResult:
        collection = self.storage.get(req.params["collection_name"])
        body = req.json()
        if not isinstance(body, dict) or "ids" not in body:
            raise errors.json_error("missing field `ids`")
        points.reject_filter(body, ("shard_key",))
        ids = points.parse_ids(body["ids"], "ids")
        with_payload = points.parse_with_payload(body.get("with_payload"), True)
        with_vector = points.parse_with_vector(body.get("with_vector"), False)
        with collection.lock:
            records = collection.shard.retrieve(ids, with_payload, with_vector)
        return JsonResult([points.record_json(record) for record in records])

    def get_point(self, req: Request) -> JsonResult:
        collection = self.storage.get(req.params["collection_name"])
        point_id = points.parse_id_from_path(req.params["id"])
        with collection.lock:
            records = collection.shard.retrieve([point_id], True, True)
        if not records:
            raise errors.not_found(f"No point with id {point_id} found")
        return JsonResult(points.record_json(records[0]))

    def scroll_points(self, req: Request) -> JsonResult:
        collection = self.storage.get(req.params["collection_name"])
        body = req.json(required=False) or {}
        if not isinstance(body, dict):
            raise errors.json_error("expected a ScrollRequest object")
        offset, limit, with_payload, with_vector = points.scroll_args(body)
        request = edge.ScrollRequest(offset=offset, limit=limit, with_payload=with_payload, with_vector=with_vector)
        with collection.lock:
            records, next_offset = collection.shard.scroll(request)
        return JsonResult(
            {
                "points": [points.record_json(record) for record in records],
                "next_page_offset": None if next_offset is None else points.id_to_json(next_offset),
            }
        )

    def count_points(self, req: Request) -> JsonResult:
        collection = self.storage.get(req.params["collection_name"])
        body = req.json(required=False) or {}
        if not isinstance(body, dict):
            raise errors.json_error("expected a CountRequest object")
        points.reject_filter(body, ("filter", "shard_key"))
        exact = body.get("exact", True)
        with collection.lock:
            count = collection.shard.count(edge.CountRequest(exact=bool(exact)))
        return JsonResult({"count": count})

    # -- collection snapshots ----------------------------------------------------------------

    def _snapshot_dir(self, req: Request) -> Tuple[Any, Path]:
        collection = self.storage.get(req.params["collection_name"])
        return collection, snapshots.collection_snapshot_dir(self.storage, collection.name)

    def list_snapshots(self, req: Request) -> JsonResult:
        _collection, directory = self._snapshot_dir(req)
        return JsonResult(snapshots.list_snapshots(directory))

    def create_snapshot(self, req: Request) -> Any:
        collection = self.storage.get(req.params["collection_name"])
        return self._wait_or_accept(
            req,
            "create-snapshot",
            lambda: snapshots.create_collection_snapshot(self.storage, collection.name, self.faults),
        )

    def download_snapshot(self, req: Request) -> FileDownload:
        _collection, directory = self._snapshot_dir(req)
        path = snapshots.snapshot_file(directory, req.params["snapshot_name"])
        return FileDownload(path, path.name)

    def delete_snapshot(self, req: Request) -> Any:
        _collection, directory = self._snapshot_dir(req)
        path = snapshots.snapshot_file(directory, req.params["snapshot_name"])
        return self._wait_or_accept(req, "delete-snapshot", lambda: snapshots.delete_snapshot(path))

    def _recovery_params(self, priority: Any, checksum: Any, where: str) -> Optional[str]:
        if priority is not None and priority not in snapshots.PRIORITIES:
            raise errors.ApiError(
                400,
                f"{where} deserialize error: priority: unknown variant `{priority}`, "
                "expected one of `no_sync`, `snapshot`, `replica`",
            )
        if checksum is None:
            return None
        if not isinstance(checksum, str) or not snapshots.is_sha256(checksum):
            raise errors.validation_error(
                "query parameters" if where == "Query" else "JSON body", "checksum: invalid SHA256 hash"
            )
        return checksum

    def upload_snapshot(self, req: Request) -> Any:
        name = req.params["collection_name"]
        wait = req.query_bool("wait", True)
        checksum = self._recovery_params(req.query.get("priority"), req.query.get("checksum"), "Query")
        scratch = self.storage.make_temp_dir(f"upload-{name}-")
        staged = scratch / "snapshot"
        digest = hashlib.sha256()
        try:
            filename = bodies.save_multipart_file(
                req.body, req.headers.get("Content-Type", ""), "snapshot", staged, digest
            )
            # Like Qdrant, the checksum is checked and the file kept before answering, even with
            # wait=false; only the recovery itself runs in the background then.
            actual = digest.hexdigest()
            if checksum is not None and actual.lower() != checksum.lower():
                raise errors.checksum_mismatch(actual, checksum)
            target_dir = snapshots.collection_snapshot_dir(self.storage, name)
            target_dir.mkdir(parents=True, exist_ok=True)
            target = target_dir / (Path(filename).name if filename else str(uuid.uuid4()))
            shutil.move(str(staged), str(target))
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        if wait:
            return JsonResult(snapshots.recover_collection(self.storage, name, target))
        return self._in_background("upload-snapshot", lambda: snapshots.recover_collection(self.storage, name, target))

    def recover_snapshot(self, req: Request) -> Any:
        name = req.params["collection_name"]
        body = req.json()
        if not isinstance(body, dict) or not isinstance(body.get("location"), str):
            raise errors.json_error("missing field `location`")
        checksum = self._recovery_params(body.get("priority"), body.get("checksum"), "Json")
        location: str = body["location"]
        api_key = body.get("api_key")
        return self._wait_or_accept(
            req, "recover-snapshot", lambda: self._recover_from_location(name, location, checksum, api_key)
        )

    def _recover_from_location(self, name: str, location: str, checksum: Optional[str], api_key: Optional[str]) -> bool:
        parsed = urllib.parse.urlparse(location)
        scratch = self.storage.make_temp_dir(f"download-{name}-")
        try:
            if parsed.scheme == "file":
                if parsed.netloc not in ("", "localhost"):
                    raise errors.bad_request("Invalid snapshot URI, file path must be absolute or on localhost")
                path = Path(urllib.parse.unquote(parsed.path))
                if not path.exists():
                    raise errors.bad_request(f'Snapshot file "{path}" does not exist')
            elif parsed.scheme in ("http", "https"):
                path = scratch / (Path(parsed.path).name or f"{uuid.uuid4()}.snapshot")
                _download(location, path, api_key)
            else:
                raise errors.bad_request(f"URL {location} with schema {parsed.scheme} is not supported")
            if checksum is not None:
                actual = snapshots.sha256_file(path)
                if actual.lower() != checksum.lower():
                    raise errors.checksum_mismatch(actual, checksum)
            return snapshots.recover_collection(self.storage, name, path)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)

    # -- full snapshots ----------------------------------------------------------------------

    def list_full_snapshots(self, req: Request) -> JsonResult:
        return JsonResult(snapshots.list_snapshots(self.storage.snapshots_dir))

    def create_full_snapshot(self, req: Request) -> Any:
        return self._wait_or_accept(
            req, "create-full-snapshot", lambda: snapshots.create_full_snapshot(self.storage, self.faults)
        )

    def download_full_snapshot(self, req: Request) -> FileDownload:
        path = snapshots.snapshot_file(self.storage.snapshots_dir, req.params["snapshot_name"])
        return FileDownload(path, path.name)

    def delete_full_snapshot(self, req: Request) -> Any:
        path = snapshots.snapshot_file(self.storage.snapshots_dir, req.params["snapshot_name"])
        return self._wait_or_accept(req, "delete-full-snapshot", lambda: snapshots.delete_snapshot(path))


def _download(url: str, target: Path, api_key: Optional[str]) -> None:
    """Fetch a snapshot over HTTP(S) in chunks, as Qdrant does for ``location`` URLs."""
    request = urllib.request.Request(url)
    if api_key:
        request.add_header("api-key", api_key)
    try:
        with urllib.request.urlopen(request, timeout=300) as response:  # noqa: S310 - test server
            snapshots.copy_stream(response, target)
    except urllib.error.HTTPError as exc:
        raise errors.bad_input(f"Failed to download snapshot from {url}: status - {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, OSError) as exc:
        raise errors.service_error(f"Http request error: {exc}") from None
