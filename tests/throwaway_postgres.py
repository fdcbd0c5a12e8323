# -*- coding: utf-8 -*-
# Copyright (c) cclite.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""A throwaway PostgreSQL 15 cluster for the pytest suites (runner, faults): initdb, pg_ctl start
on a free port with a password for postgres, stopped and deleted afterwards."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import typing as t

PGBIN = "/usr/lib/postgresql/15/bin"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def installed() -> bool:
    return os.path.exists(os.path.join(PGBIN, "initdb"))


def _as_postgres(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run(["runuser", "-u", "postgres", "--", *argv], cwd="/", check=True, capture_output=True, text=True)


@contextlib.contextmanager
def cluster(password: str, prefix: str, settings: t.Sequence[str] = ()) -> t.Iterator[tuple[int, str]]:
    """Start a cluster (``settings``: extra ``-c name=value``); yields its port and data directory."""
    base = tempfile.mkdtemp(prefix=prefix, dir="/var/tmp")
    os.chmod(base, 0o755)
    data = os.path.join(base, "data")
    os.mkdir(data, 0o700)
    shutil.chown(data, "postgres")
    try:
        pwfile = os.path.join(base, "pw")
        with open(pwfile, "w", encoding="utf-8") as handle:
            handle.write(password)
        shutil.chown(pwfile, "postgres")
        port = free_port()
        _as_postgres(os.path.join(PGBIN, "initdb"), "-D", data, "-U", "postgres", "--pwfile=" + pwfile,
                     "--auth=scram-sha-256", "-E", "UTF8", "--locale=C.UTF-8")
        os.unlink(pwfile)
        options = "-p %d -k %s -c listen_addresses=127.0.0.1" % (port, data) + "".join(" -c %s" % s for s in settings)
        _as_postgres(os.path.join(PGBIN, "pg_ctl"), "-D", data, "-w", "-l", os.path.join(data, "pg.log"), "-o", options, "start")
        yield port, data
    finally:
        subprocess.run(["runuser", "-u", "postgres", "--", os.path.join(PGBIN, "pg_ctl"), "-D", data, "-m", "fast", "stop"],
                       cwd="/", check=False, capture_output=True)
        shutil.rmtree(base, ignore_errors=True)
