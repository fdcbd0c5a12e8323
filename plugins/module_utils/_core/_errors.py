# -*- coding: utf-8 -*-
# Copyright (c) cclite.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The one exception hierarchy of cclite.backup.

Modules catch :class:`BackupError` in one place and turn it into ``fail_json``. Every message
says what failed and what to do about it; none carries a secret (callers redact first).
"""

from __future__ import annotations

import typing as t


class BackupError(Exception):
    """Base class: a failure the user can act on."""

    def __init__(self, msg: str, **details: t.Any) -> None:
        super().__init__(msg)
        self.msg = msg
        self.details = details


class ConfigError(BackupError):
    """Bad input: an option, a file name, a missing tool."""


class StageError(BackupError):
    """A process or stage of a pipeline failed (exit status, signal, I/O)."""


class LockTimeout(BackupError):
    """Another run holds the store's lock for longer than we may wait."""


class VerifyError(BackupError):
    """An artifact did not pass a check."""


class RestoreError(BackupError):
    """A restore step failed; the message says what state the target is in."""


def with_hint(message: str, hints: t.Iterable[tuple[str, str]]) -> str:
    """``message`` with the fix of the first ``(needle, hint)`` whose needle it contains."""
    for needle, hint in hints:
        if needle in message:
            return "%s (%s)" % (message, hint)
    return message
