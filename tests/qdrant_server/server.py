"""Process entry: build storage, API and HTTP server, serve until SIGTERM/SIGINT."""

from __future__ import annotations

import logging
import signal
import sys
import threading
from typing import List, Optional

from .api import QdrantApi
from .config import ServerConfig, parse_args
from .faults import Faults, FaultSettings
from .http_server import QdrantHTTPServer
from .storage import Storage


def build_server(config: ServerConfig) -> QdrantHTTPServer:
    """Open the storage and bind the HTTP server (port 0 picks a free port)."""
    config.storage.mkdir(parents=True, exist_ok=True)
    storage = Storage(config.storage.resolve())
    faults = Faults(FaultSettings(**config.faults))
    return QdrantHTTPServer(config, QdrantApi(config, storage, faults))


def main(argv: Optional[List[str]] = None) -> int:
    """Run the server in the foreground."""
    config = parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING if config.quiet else logging.INFO, format="%(asctime)s %(levelname)s %(message)s"
    )
    server = build_server(config)

    def stop(signum: int, frame: object) -> None:
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(
        f"qdrant test server {config.version} listening on http://{config.host}:{server.server_port}"
        f" storage={config.storage}",
        flush=True,
    )
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()
        server.api.storage.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
