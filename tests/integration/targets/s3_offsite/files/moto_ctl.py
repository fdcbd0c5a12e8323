# Copyright (c) cclite.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Start or stop a moto S3 server on 127.0.0.1 for the tests: a real local S3 endpoint.

start DIR: pick a free port, start ``python -m moto.server`` in its own session (log in DIR),
wait until it answers, print {"port": N, "pid": N, "url": ...}. stop DIR: end that process.
A free port with nothing on it is printed as "down_url", for the endpoint-down tests.
"""
import json
import os
import signal
import socket
import subprocess
import sys
import time


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start(directory):
    os.makedirs(directory, exist_ok=True)
    stop(directory)
    port = free_port()
    with open(os.path.join(directory, "moto.log"), "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True,
        )
    with open(os.path.join(directory, "moto.pid"), "w") as handle:
        handle.write(str(proc.pid))
    deadline = time.monotonic() + 60
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                sys.exit("moto did not start; see %s/moto.log" % directory)
            time.sleep(0.1)
    print(json.dumps({"port": port, "pid": proc.pid, "url": "http://127.0.0.1:%d" % port,
                      "down_url": "http://127.0.0.1:%d" % free_port()}))


def stop(directory):
    path = os.path.join(directory, "moto.pid")
    try:
        with open(path) as handle:
            pid = int(handle.read().strip())
    except (OSError, ValueError):
        return
    try:
        os.kill(pid, signal.SIGTERM)
        for _attempt in range(50):
            os.kill(pid, 0)
            time.sleep(0.1)
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    os.unlink(path)


if __name__ == "__main__":
    {"start": start, "stop": stop}[sys.argv[1]](sys.argv[2])
