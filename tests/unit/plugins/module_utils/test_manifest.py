# -*- coding: utf-8 -*-
# Copyright (c) cclite.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Manifests: what goes in, the atomic write, and reading back good and bad sidecars."""

from __future__ import annotations

import datetime
import json
import os
import socket
import stat

import pytest

from ansible_collections.cclite.backup.plugins.module_utils._core import _manifest
from ansible_collections.cclite.backup.plugins.module_utils._core._artifact import Compression, Written
from ansible_collections.cclite.backup.plugins.module_utils._core._errors import VerifyError

UTC = datetime.timezone.utc
STARTED = datetime.datetime(2025, 3, 4, 5, 6, 7, 250000, tzinfo=UTC)
ENDED = STARTED + datetime.timedelta(seconds=12, milliseconds=500)
SHA = "ab" * 32


@pytest.fixture
def written(tmp_path) -> Written:
    return Written(str(tmp_path / "postgres_backup_20250304_050607.sql.gz"), 4321, SHA, STARTED, ENDED)


def test_build(written):
    source = {"tables": {"public.users": 3}}
    manifest = _manifest.build(
        "postgresql",
        written,
        Compression("gzip", 6, 1),
        fmt="plain",
        database="app",
        series="app",
        host="db1.example.org",
        versions={"postgresql": "16.2", "pg_dump": "pg_dump (PostgreSQL) 16.2"},
        source=source,
        kind="manual",
    )
    assert manifest == {
        "schema": "cclite.backup/manifest",
        "version": 1,
        "kind": "manual",
        "store": "postgresql",
        "host": "db1.example.org",
        "database": "app",
        "series": "app",
        "format": "plain",
        "compression": {"algorithm": "gzip", "level": 6, "program": "gzip"},
        "artifact": {"name": "postgres_backup_20250304_050607.sql.gz", "size": 4321, "sha256": SHA},
        "started": "2025-03-04T05:06:07.250000+00:00",
        "ended": "2025-03-04T05:06:19.750000+00:00",
        "duration_seconds": 12.5,
        "versions": {"postgresql": "16.2", "pg_dump": "pg_dump (PostgreSQL) 16.2", "collection": "0.1.0"},
        "source": {"tables": {"public.users": 3}},
        "encryption": None,
    }
    source["extra"] = 1
    assert "extra" not in manifest["source"]  # a copy, not the caller's dict


def test_build_defaults(written):
    manifest = _manifest.build("postgresql", written, Compression("none", 0), fmt="plain")
    assert manifest["host"] == socket.getfqdn()
    assert manifest["kind"] == "scheduled" and manifest["database"] == "" and manifest["series"] == ""
    assert manifest["versions"] == {"collection": "0.1.0"} and manifest["source"] == {}
    assert manifest["compression"] == {"algorithm": "none", "level": 0, "program": None}


def test_write_and_read_round_trip(tmp_path, written):
    artifact = str(tmp_path / "postgres_backup_20250304_050607.sql.gz")
    manifest = _manifest.build("postgresql", written, Compression("gzip", 6, 1), fmt="plain", host="h")
    path = _manifest.write(artifact, manifest)
    assert path == artifact + ".manifest.json" == _manifest.path_for(artifact)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert json.loads(open(path, encoding="utf-8").read()) == manifest
    assert _manifest.read(artifact) == manifest
    assert _manifest.ended(_manifest.read(artifact)) == ENDED
    assert sorted(os.listdir(tmp_path)) == [_manifest.JOURNAL, "postgres_backup_20250304_050607.sql.gz.manifest.json"]


def test_write_replaces_an_existing_manifest(tmp_path, written):
    artifact = str(tmp_path / "a.sql.gz")
    first = _manifest.build("postgresql", written, Compression("gzip", 6, 1), fmt="plain", host="h")
    _manifest.write(artifact, first, mode=0o640)
    second = dict(first, kind="manual")
    _manifest.write(artifact, second)
    assert _manifest.read(artifact)["kind"] == "manual"
    assert stat.S_IMODE(os.stat(_manifest.path_for(artifact)).st_mode) == 0o600
    assert sorted(os.listdir(tmp_path)) == [_manifest.JOURNAL, "a.sql.gz.manifest.json"]


def test_write_json_failure_leaves_no_temp_file(tmp_path):
    with pytest.raises(TypeError):
        _manifest.write_json(str(tmp_path / "x.json"), {"not json": object()})
    assert os.listdir(tmp_path) == []


def test_read_missing_is_legacy(tmp_path):
    assert _manifest.read(str(tmp_path / "postgres_backup_20250304_050607.sql.gz")) is None


@pytest.mark.parametrize(
    "text, message",
    [
        ("{not json", "cannot be read"),
        ("", "cannot be read"),
        ('{"schema": "something/else", "version": 1}', "is not a cclite.backup manifest"),
        ('["cclite.backup/manifest"]', "is not a cclite.backup manifest"),
        ("\xff\xfe", "cannot be read"),
    ],
    ids=["broken-json", "empty", "other-schema", "not-an-object", "not-utf8"],
)
def test_read_invalid_manifest(tmp_path, text, message):
    artifact = str(tmp_path / "a.sql.gz")
    with open(_manifest.path_for(artifact), "wb") as handle:
        handle.write(text.encode("latin-1"))
    with pytest.raises(VerifyError) as err:
        _manifest.read(artifact)
    assert message in err.value.msg and _manifest.path_for(artifact) in err.value.msg


@pytest.mark.parametrize("manifest", [{}, {"ended": None}, {"ended": "yesterday"}], ids=["missing", "null", "garbage"])
def test_ended_without_a_usable_time(manifest):
    assert _manifest.ended(manifest) is None
