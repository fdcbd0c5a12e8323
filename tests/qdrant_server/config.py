"""Command line of the test server."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import Any, Dict, List, Optional

from . import faults

DEFAULT_VERSION = "1.19.2"
DEFAULT_COMMIT = "0000000000000000000000000000000000000000"


@dataclasses.dataclass(frozen=True)
class ServerConfig:
    """Settings of one server process."""

    host: str
    port: int
    storage: Path
    api_key: Optional[str]
    read_only_api_key: Optional[str]
    version: str
    commit: str
    quiet: bool
    faults: Dict[str, Any]


def build_parser() -> argparse.ArgumentParser:
    """Argument parser for ``python -m tests.qdrant_server``."""
    parser = argparse.ArgumentParser(
        prog="python -m tests.qdrant_server",
        description="Qdrant-compatible REST test server (collections, points, snapshots) on Qdrant Edge.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=6333, help="port to listen on (default 6333, 0 = any)")
    parser.add_argument("--storage", type=Path, required=True, help="storage directory (created if missing)")
    parser.add_argument("--api-key", default=None, help="read-write API key (like QDRANT__SERVICE__API_KEY)")
    parser.add_argument("--read-only-api-key", default=None, help="read-only API key")
    parser.add_argument(
        "--version", default=DEFAULT_VERSION, help=f"version reported by GET / (default {DEFAULT_VERSION})"
    )
    parser.add_argument("--commit", default=DEFAULT_COMMIT, help="commit reported by GET /")
    parser.add_argument("--quiet", action="store_true", help="do not log every request to stderr")
    group = parser.add_argument_group("fault injection (also QDRANT_TEST_FAULTS and POST /__faults)")
    group.add_argument("--fault-snapshot-delay", type=float, metavar="SECONDS", help="sleep before writing a snapshot")
    group.add_argument(
        "--fault-download-http-error", type=int, metavar="STATUS", help="answer snapshot downloads with this status"
    )
    group.add_argument(
        "--fault-download-cut-after", type=int, metavar="BYTES", help="close download connections after BYTES"
    )
    group.add_argument(
        "--fault-download-count", type=int, metavar="N", help="apply download faults to the next N downloads only"
    )
    group.add_argument("--fault-wrong-checksum", action="store_true", help="write wrong checksums for new snapshots")
    return parser


def parse_args(argv: Optional[List[str]] = None) -> ServerConfig:
    """Parse the command line and the ``QDRANT_TEST_FAULTS`` environment variable."""
    args = build_parser().parse_args(argv)
    fault_settings = faults.from_environment()
    flags = {
        "snapshot_delay": args.fault_snapshot_delay,
        "download_http_error": args.fault_download_http_error,
        "download_cut_after": args.fault_download_cut_after,
        "download_fault_count": args.fault_download_count,
        "wrong_checksum": True if args.fault_wrong_checksum else None,
    }
    fault_settings.update(faults.validate_changes({k: v for k, v in flags.items() if v is not None}))
    return ServerConfig(
        host=args.host,
        port=args.port,
        storage=args.storage,
        api_key=args.api_key,
        read_only_api_key=args.read_only_api_key,
        version=args.version,
        commit=args.commit,
        quiet=args.quiet,
        faults=fault_settings,
    )
