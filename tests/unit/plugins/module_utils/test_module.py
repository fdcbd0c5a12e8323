# -*- coding: utf-8 -*-
# Copyright (c) cclite.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Argument specs to settings, and the one place errors become fail_json."""

from __future__ import annotations

import typing as t

import pytest

from ansible_collections.cclite.backup.plugins.module_utils._core import _module
from ansible_collections.cclite.backup.plugins.module_utils._core._artifact import Compression
from ansible_collections.cclite.backup.plugins.module_utils._core._errors import BackupError, ConfigError, StageError
from ansible_collections.cclite.backup.plugins.module_utils._core._verify import Rules


class Exited(Exception):
    pass


class FakeModule:
    """Records what AnsibleModule.exit_json / fail_json were given; both end the run, as the real ones do."""

    def __init__(self) -> None:
        self.params: dict[str, t.Any] = {}
        self.exited: dict[str, t.Any] | None = None
        self.failed: dict[str, t.Any] | None = None

    def exit_json(self, **kwargs: t.Any) -> None:
        self.exited = kwargs
        raise Exited()

    def fail_json(self, **kwargs: t.Any) -> None:
        self.failed = kwargs
        raise Exited()


def defaults(spec: dict[str, t.Any]) -> dict[str, t.Any]:
    return {name: option.get("default") for name, option in spec.items()}


@pytest.mark.parametrize("algorithm, level, expected", [
    ("gzip", None, Compression("gzip", 6, 0)),
    ("zstd", None, Compression("zstd", 1, 0)),
    ("zstd", 19, Compression("zstd", 19, 0)),
])
def test_compression_from(algorithm, level, expected):
    params = dict(defaults(_module.compression_argument_spec()), compression=algorithm, compression_level=level)
    assert _module.compression_from(params) == expected


def test_compression_from_rejects_a_bad_level():
    params = dict(defaults(_module.compression_argument_spec()), compression="gzip", compression_level=12)
    with pytest.raises(ConfigError):
        _module.compression_from(params)


def test_compression_choices_exclude_none():
    assert _module.compression_argument_spec()["compression"]["choices"] == ["gzip", "zstd"]


def test_rules_from_defaults():
    assert _module.rules_from(defaults(_module.rules_argument_spec())) == Rules(25.0, 1024, 0.5)


@pytest.mark.parametrize("mode, expected", [("0600", 0o600), ("0640", 0o640), ("600", 0o600), (0o640, 0o640), (384, 0o600)])
def test_file_mode_from(mode, expected):
    assert _module.file_mode_from({"file_mode": mode}) == expected


@pytest.mark.parametrize("mode", ["rw-------", "0800", ""])
def test_file_mode_from_rejects(mode):
    with pytest.raises(BackupError) as err:
        _module.file_mode_from({"file_mode": mode})
    assert err.value.msg == "file_mode %r is not an octal mode like '0600'" % mode


def test_run_exits_with_the_result():
    module = FakeModule()
    with pytest.raises(Exited):
        _module.run(module, lambda: {"changed": True, "msg": "made a backup"})
    assert module.exited == {"changed": True, "msg": "made a backup"} and module.failed is None


def test_run_turns_a_domain_error_into_fail_json():
    module = FakeModule()

    def action() -> dict[str, t.Any]:
        raise StageError("pg_dump failed with exit status 1: boom", stage="pg_dump", rc=1)

    with pytest.raises(Exited):
        _module.run(module, action)
    assert module.failed == {"msg": "pg_dump failed with exit status 1: boom", "stage": "pg_dump", "rc": 1}
    assert module.exited is None


def test_run_lets_programming_errors_through():
    module = FakeModule()
    with pytest.raises(KeyError):
        _module.run(module, lambda: {}["missing"])
    assert module.failed is None and module.exited is None


@pytest.mark.parametrize("days", [1, 30, None])
def test_retention_days_from_keeps_a_positive_number_or_none(days):
    assert _module.retention_days_from({"retention_days": days}) == days


@pytest.mark.parametrize("days", [0, -1, -30])
def test_retention_days_from_refuses_zero_and_negatives(days):
    # 0 or less puts every backup (and every run log) before the cutoff: issue 18.3
    with pytest.raises(ConfigError, match=r"retention_days is %d: give a whole number of days, at least 1" % days):
        _module.retention_days_from({"retention_days": days})
