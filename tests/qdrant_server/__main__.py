"""``python -m tests.qdrant_server --host 127.0.0.1 --port PORT --storage DIR [--api-key KEY]``."""

from __future__ import annotations

import sys

from .server import main

sys.exit(main())
