"""Qdrant-compatible REST test server for cclite.backup (see README.md in this folder).

Start it from the repository root::

    python -m tests.qdrant_server --host 127.0.0.1 --port 6333 --storage /tmp/qdrant-storage

Storage is Qdrant Edge (``qdrant-edge-py``); the HTTP layer is the standard library.
"""
