# -*- coding: utf-8 -*-
# Copyright (c) cclite.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Host-mode Redis drills against a real redis-server: the drill starts a scratch redis-server from
the production server's own binary in a temp directory, restores the backup into it through the
one restore flow (the RDB put in place with the scratch server stopped and started, not the
service), compares, and removes it, also on failure; production is only read. Without
redis-server on the host the drill refuses, naming the fix."""

from __future__ import annotations

import json
import os
import re
import shutil

import pytest

from ansible_collections.cclite.backup.plugins.module_utils._core import _drill, _manifest
from ansible_collections.cclite.backup.plugins.module_utils._core._restore import RestoreSpec
from ansible_collections.cclite.backup.plugins.module_utils._engines.redis import _drill as rd_drill
from ansible_collections.cclite.backup.plugins.module_utils._engines.redis import _engine as ops
from ansible_collections.cclite.backup.plugins.module_utils._engines.redis import _restore as redis_restore
from ansible_collections.cclite.backup.tests.unit.plugins.module_utils.test_redis_ops import spec_for
from ansible_collections.cclite.backup.tests.unit.plugins.module_utils.test_redis_server import Server, dumps, seed

pytestmark = pytest.mark.skipif(not shutil.which("redis-server"), reason="redis-server is not installed")


def scratch_dir(drilled: dict) -> str:
    """The scratch server's directory, as the drill reports it."""
    found = re.search(r" in (/\S+cclite-redis-scratch-\S+) \(", drilled["server"])
    assert found, drilled["server"]
    return found.group(1)


def drill(server: Server, root: str, method: str = "rdb") -> dict:
    request = redis_restore.RestoreRequest(server.conn, RestoreSpec(ops.catalog(root, method), "latest", True), method=method)
    scratch = rd_drill.HostScratch(server.conn)
    return _drill.run_drill("redis", request.spec, rd_drill.Drill(request, None, scratch), scratch, 30)


@pytest.mark.parametrize("method", ["rdb", "logical"])
def test_a_host_mode_drill_restores_into_a_scratch_server_and_leaves_production_alone(tmp_path, method):
    server = Server(str(tmp_path / "production"))
    try:
        with server.session() as session:
            seed(session)
            before = dumps(session)
        root = str(tmp_path / "backups")
        ops.backup(ops.BackupRequest(server.conn, spec_for(root, server.conn, method), ops.Settings(method)), check_mode=False)
        production_files = sorted(os.listdir(server.data))
        out = drill(server, root, method)
        result = out["drill"]
        assert result["passed"] and result["ran"]
        assert result["server"].startswith("a scratch redis-server 7.") and "(socket only, no TCP port)" in result["server"]
        assert result["compared"]["databases"] == {"db0": {"keys": 8, "expires": 1}, "db3": {"keys": 1, "expires": 0}}
        if method == "logical":  # a logical dump's manifest holds no key sample: the drill says so
            assert result["compared"]["sample"] == {"keys": 0, "note": "the manifest holds no key sample"}
        else:  # the RDB was put in place with the scratch server stopped and started, never a service
            assert result["compared"]["sample"]["keys"] >= 2
            assert "stopped the scratch redis-server" in out["actions"] and "started the scratch redis-server" in out["actions"]
        with server.session() as session:
            assert dumps(session) == before  # production: the same keys, values and TTLs
        assert sorted(os.listdir(server.data)) == production_files
        assert not os.path.exists(scratch_dir(result))  # stopped and deleted

        if method == "logical":
            return
        # a backup whose values differ from what the drill loads (here its recorded key sample): the drill fails, and cleans up
        path = os.path.join(root, "redis", os.readlink(os.path.join(root, "redis", "latest.%s.gz" % ("rdb" if method == "rdb" else "keys"))))
        manifest = _manifest.read(path)
        # a text key (the sample lists keys in the RDB's order; a binary key is shown in base64)
        first = next(k for k in manifest["source"]["sample"] if k.get("key") is not None)
        first["type"] = "stream" if first["type"] != "stream" else "string"
        with open(path + ".manifest.json", "w", encoding="utf-8") as handle:
            json.dump(manifest, handle)
        with pytest.raises(_drill.DrillError) as exc:
            drill(server, root, method)
        assert "the redis drill failed" in exc.value.msg and "db%d key %s is a " % (first["db"], first["key"]) in exc.value.msg, exc.value.msg
        assert exc.value.details["drill"]["ran"] and not exc.value.details["drill"]["passed"]
        assert not os.path.exists(scratch_dir(exc.value.details["drill"]))
    finally:
        server.stop()


def test_without_redis_server_on_the_host_the_drill_refuses_naming_the_fix(tmp_path, monkeypatch):
    binary = tmp_path / "bin" / "redis-server"
    binary.parent.mkdir()
    shutil.copy(shutil.which("redis-server"), binary)
    monkeypatch.setenv("PATH", str(tmp_path / "bin") + os.pathsep + os.environ["PATH"])
    server = Server(str(tmp_path / "production"))  # started as bin/redis-server: INFO server says so
    try:
        with server.session() as session:
            seed(session)
        root = str(tmp_path / "backups")
        ops.backup(ops.BackupRequest(server.conn, spec_for(root, server.conn)), check_mode=False)
        binary.unlink()  # the server's binary is gone from this host, and there is no other
        tools = tmp_path / "tools"  # redis-cli (the client), no server
        tools.mkdir()
        os.symlink(shutil.which("redis-cli"), tools / "redis-cli")
        monkeypatch.setenv("PATH", str(tools))
        with pytest.raises(_drill.DrillError) as exc:
            drill(server, root)
        assert exc.value.msg.startswith("the redis drill cannot run: the server runs on the host (mode host) and redis-server is "
                                        "not installed on this host")
        assert "install redis-server" in exc.value.msg and "redis_drill_target" in exc.value.msg
        assert exc.value.details["drill"]["ran"] is False
    finally:
        server.stop()
