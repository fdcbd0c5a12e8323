# -*- coding: utf-8 -*-
# Copyright (c) cclite.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""What every cclite.backup module shares: argument specs and the one place errors become
``fail_json`` (what only the ``*_restore`` modules share is in ``_module_restore``, so that the
other modules neither carry nor import the restore flow)."""

from __future__ import annotations

import typing as t

from ansible_collections.cclite.backup.plugins.module_utils._core import _crypto, _progress
from ansible_collections.cclite.backup.plugins.module_utils._core._artifact import Compression
from ansible_collections.cclite.backup.plugins.module_utils._core._errors import BackupError, ConfigError, VerifyError
from ansible_collections.cclite.backup.plugins.module_utils._core._sets import RUN_ID_RE
from ansible_collections.cclite.backup.plugins.module_utils._core._verify import Rules

DEFAULT_LEVELS = {"gzip": 6, "zstd": 1, "none": 0}  # zstd 1: see the catalog doc fragment


def catalog_argument_spec() -> dict[str, t.Any]:
    return {
        "backup_root": {"type": "path", "default": "/var/backups/cc-lite"},
        "series": {"type": "str", "default": ""},
        "lock_timeout": {"type": "int", "default": 600},
    }


def set_argument_spec() -> dict[str, t.Any]:
    """The run a backup belongs to (doc fragment cclite.backup.backup_set)."""
    return {
        "run_id": {"type": "str", "default": ""},
        "host": {"type": "str", "default": ""},
    }


def set_from(params: t.Mapping[str, t.Any]) -> dict[str, str]:
    """``run_id`` and ``host`` for a :class:`BackupSpec`, the run id checked."""
    run_id = (params.get("run_id") or "").strip()
    if run_id and not RUN_ID_RE.fullmatch(run_id):
        raise ConfigError("run_id is %r: give the run's backup_run_id (YYYYMMDD_HHMMSS), or leave it empty" % run_id)
    return {"run_id": run_id, "host": (params.get("host") or "").strip()}


def encryption_argument_spec() -> dict[str, t.Any]:
    """Encryption at rest (doc fragment ``catalog.ENCRYPTION``): the off-site copies' key, and
    whether the backups this module writes are encrypted with it."""
    return {
        "encrypt": {"type": "bool", "default": False},
        "encryption_key": {"type": "str", "default": "", "no_log": True},
        "encryption_key_file": {"type": "path", "default": ""},
    }


def configure_key(params: t.Mapping[str, t.Any]) -> None:
    """Give the artifact reader the module's key, if it takes one (``run`` does it for every module)."""
    if "encryption_key" in params or "encryption_key_file" in params:
        _crypto.configure(_crypto.Key.load(params.get("encryption_key") or "", params.get("encryption_key_file") or ""))


def encryption_from(params: t.Mapping[str, t.Any]) -> _crypto.Key | None:
    """The key to encrypt the backups this module writes with; ``None``: they stay plaintext."""
    if not params.get("encrypt"):
        return None
    key = _crypto.configured()
    if key is None:
        raise ConfigError(
            "backup_local_encryption is on (the module's encrypt) but no key is given: set %s; nothing was written"
            % _crypto.KEY_SETTINGS
        )
    _crypto.require()
    return key


def retention_keep_argument_spec() -> dict[str, t.Any]:
    counts = {rule: {"type": "int", "default": 0} for rule in ("daily", "weekly", "monthly")}
    return {"retention_keep": {"type": "dict", "options": counts}}


def compression_argument_spec() -> dict[str, t.Any]:
    return {
        "compression": {"type": "str", "default": "gzip", "choices": ["gzip", "zstd"]},
        "compression_level": {"type": "int"},
        "compression_threads": {"type": "int", "default": 0},
        "file_mode": {"type": "raw", "default": "0600"},
    }


def progress_argument_spec() -> dict[str, t.Any]:
    """The status file of a backup or restore module (doc fragment ``catalog.PROGRESS``)."""
    return {"progress_file": {"type": "path"}}


def rules_argument_spec() -> dict[str, t.Any]:
    return {
        "max_age_hours": {"type": "float", "default": 25.0},
        "min_size_bytes": {"type": "int", "default": 1024},
        "size_drop_ratio": {"type": "float", "default": 0.5},
    }


def info_argument_spec() -> dict[str, t.Any]:
    """What every *_backup_info module takes: the catalog, the level, the rules."""
    spec: dict[str, t.Any] = {
        "verify": {"type": "str", "default": "full", "choices": ["none", "quick", "full", "deep"]},
        "fail_on_problems": {"type": "bool", "default": False},
    }
    spec.update(catalog_argument_spec())
    spec.update(rules_argument_spec())
    return spec


def adopt_argument_spec() -> dict[str, t.Any]:
    """What every *_backup_adopt module takes: the catalog, the size rules, the manifests' mode."""
    spec: dict[str, t.Any] = {
        "min_size_bytes": {"type": "int", "default": 1024},
        "size_drop_ratio": {"type": "float", "default": 0.5},
        "fail_on_problems": {"type": "bool", "default": False},
        "file_mode": {"type": "raw", "default": "0600"},
    }
    spec.update(catalog_argument_spec())
    return spec


def adopt_rules_from(params: t.Mapping[str, t.Any]) -> Rules:
    return Rules(min_size_bytes=params["min_size_bytes"], size_drop_ratio=params["size_drop_ratio"])


def info_result(result: dict[str, t.Any], fail_on_problems: bool) -> dict[str, t.Any]:
    """An info module's result with its summary; fails listing every problem when asked to."""
    problems = result["problems"]
    if fail_on_problems and problems:
        raise VerifyError("%d problem(s): %s" % (len(problems), "; ".join(problems)), **result)
    state = "healthy" if result["healthy"] else "%d problem(s)" % len(problems)
    result["msg"] = "%d backup(s); %s" % (len(result["backups"]), state)
    return dict(changed=False, **result)


def compression_from(params: t.Mapping[str, t.Any]) -> Compression:
    algorithm = params["compression"]
    level = params.get("compression_level")
    return Compression(algorithm, DEFAULT_LEVELS[algorithm] if level is None else level, params["compression_threads"])


def rules_from(params: t.Mapping[str, t.Any]) -> Rules:
    return Rules(params["max_age_hours"], params["min_size_bytes"], params["size_drop_ratio"])


def file_mode_from(params: t.Mapping[str, t.Any]) -> int:
    mode = params["file_mode"]
    try:
        return int(mode, 8) if isinstance(mode, str) else int(mode)
    except ValueError:
        raise BackupError("file_mode %r is not an octal mode like '0600'" % mode) from None


def retention_days_from(params: t.Mapping[str, t.Any], option: str = "retention_days") -> int | None:
    """The retention in days, refused below 1: 0 or less would make every backup "older"."""
    days = params[option]
    if days is not None and days < 1:
        raise ConfigError(
            "%s is %d: give a whole number of days, at least 1 (what is older is deleted, never the newest good "
            "backup); nothing was changed" % (option, days))
    return days


def run(module: t.Any, action: t.Callable[[], dict[str, t.Any]], progress: tuple[str, str, str] | None = None) -> None:
    """Run ``action`` and exit: a domain error becomes ``fail_json`` with its message.

    ``progress`` (store, action, target) keeps the status file of ``progress_file`` while
    ``action`` runs (see ``_progress``); it is gone before the module exits.
    """
    path = module.params.get("progress_file") if progress and not module.check_mode else None
    try:
        configure_key(module.params)
        with _progress.reporting(path, *(progress or ("", "", ""))):
            result = action()
    except BackupError as exc:
        module.fail_json(msg=exc.msg, **exc.details)
    module.exit_json(**result)
