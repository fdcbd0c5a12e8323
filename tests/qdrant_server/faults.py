"""Fault injection switches (not part of Qdrant).

Faults can be set from three places, later ones overriding earlier ones:

1. the ``QDRANT_TEST_FAULTS`` environment variable, a JSON object;
2. command line flags (``--fault-snapshot-delay`` ...);
3. at run time: ``POST /__faults`` with a JSON object (merged), ``DELETE /__faults`` (reset),
   ``GET /__faults`` (read). These endpoints need no API key.

Switches (JSON keys):

``snapshot_delay`` (float, seconds)
    Sleep before a collection or full snapshot is written. With ``wait=false`` the snapshot
    shows up in the list only after the delay.
``download_http_error`` (int status, e.g. 500)
    Answer snapshot downloads with this status and Qdrant's error envelope instead of the file.
``download_cut_after`` (int, bytes)
    Send ``200`` with the full ``Content-Length``, stream this many bytes, then close the
    connection (a transfer cut midway).
``download_fault_count`` (int or null)
    How many downloads the two download faults affect; each faulty download decrements it and
    ``0`` disables them. ``null`` (default) means every download.
``wrong_checksum`` (bool)
    Snapshots created while this is on get a wrong sha256 in their ``.checksum`` sidecar, so the
    list and create responses report a checksum that does not match the file.
"""

from __future__ import annotations

import dataclasses
import json
import os
import threading
from typing import Any, Dict, Optional

ENV_VAR = "QDRANT_TEST_FAULTS"


@dataclasses.dataclass
class FaultSettings:
    """Current fault switches; see the module docstring."""

    snapshot_delay: float = 0.0
    download_http_error: Optional[int] = None
    download_cut_after: Optional[int] = None
    download_fault_count: Optional[int] = None
    wrong_checksum: bool = False


_FIELD_TYPES: Dict[str, tuple] = {
    "snapshot_delay": (int, float),
    "download_http_error": (int, type(None)),
    "download_cut_after": (int, type(None)),
    "download_fault_count": (int, type(None)),
    "wrong_checksum": (bool,),
}


class Faults:
    """Thread-safe holder of :class:`FaultSettings`."""

    def __init__(self, initial: Optional[FaultSettings] = None) -> None:
        self._lock = threading.Lock()
        self._settings = initial or FaultSettings()

    def snapshot(self) -> FaultSettings:
        """Return a copy of the current settings."""
        with self._lock:
            return dataclasses.replace(self._settings)

    def as_dict(self) -> Dict[str, Any]:
        """Return the current settings as a JSON-ready dict."""
        return dataclasses.asdict(self.snapshot())

    def update(self, changes: Dict[str, Any]) -> None:
        """Merge ``changes`` into the settings; raises ``ValueError`` on unknown keys or types."""
        checked = validate_changes(changes)
        with self._lock:
            self._settings = dataclasses.replace(self._settings, **checked)

    def reset(self) -> None:
        """Switch every fault off."""
        with self._lock:
            self._settings = FaultSettings()

    def take_download_fault(self) -> Optional[FaultSettings]:
        """Return the settings if this download must fail, consuming one count."""
        with self._lock:
            current = self._settings
            if current.download_http_error is None and current.download_cut_after is None:
                return None
            if current.download_fault_count is not None:
                if current.download_fault_count <= 0:
                    return None
                self._settings = dataclasses.replace(current, download_fault_count=current.download_fault_count - 1)
            return dataclasses.replace(current)


def validate_changes(changes: Dict[str, Any]) -> Dict[str, Any]:
    """Check keys and value types of a fault update."""
    if not isinstance(changes, dict):
        raise ValueError("fault settings must be a JSON object")
    checked: Dict[str, Any] = {}
    for key, value in changes.items():
        if key not in _FIELD_TYPES:
            raise ValueError(f"unknown fault {key!r}; known: {sorted(_FIELD_TYPES)}")
        allowed = _FIELD_TYPES[key]
        if isinstance(value, bool) and bool not in allowed:
            raise ValueError(f"fault {key!r} does not take a boolean")
        if not isinstance(value, allowed):
            raise ValueError(f"fault {key!r} has a value of the wrong type: {value!r}")
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value < 0:
            raise ValueError(f"fault {key!r} must not be negative")
        checked[key] = float(value) if key == "snapshot_delay" else value
    return checked


def from_environment(environ: Optional[Dict[str, str]] = None) -> Dict[str, Any]:
    """Read fault settings from ``QDRANT_TEST_FAULTS`` (empty dict when unset)."""
    raw = (environ if environ is not None else os.environ).get(ENV_VAR, "").strip()
    if not raw:
        return {}
    return validate_changes(json.loads(raw))
