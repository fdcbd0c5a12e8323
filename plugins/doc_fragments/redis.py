# -*- coding: utf-8 -*-
# Copyright (c) cclite.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Shared option documentation: how every Redis module reaches the server (docker or host mode, login options, TLS)."""

from __future__ import annotations


class ModuleDocFragment:
    # Matches _redis.connection_argument_spec().
    DOCUMENTATION = r"""
options:
  mode:
    description:
      - Where C(redis-cli) and the other tools run.
      - V(docker) runs them inside O(container) on the managed host through C(docker exec), so
        their version matches the server's, and reads the RDB from the container's data
        directory (C(/data) in the guide's C(cc-lite-redis)).
      - V(host) runs them on the managed host; the server may be local (its files are then read
        directly) or elsewhere on the network.
    type: str
    choices: [docker, host]
    default: docker
  container:
    description: Name of the Redis container, for O(mode=docker).
    type: str
    default: cc-lite-redis
  container_user:
    description: User the tools run as inside the container (C(docker exec -u)); empty uses the container's default.
    type: str
    default: ""
  login_host:
    description:
      - Host name or address of the server. Empty means C(127.0.0.1) as seen from where the
        tools run (inside the container in O(mode=docker)).
    type: str
    default: ""
  login_port:
    description: Port of the server.
    type: int
    default: 6379
  login_user:
    description: ACL user to log in as (Redis 6 and later). Empty uses the C(default) user.
    type: str
    default: ""
  login_password:
    description:
      - Password of O(login_user) (the guide's C(REDIS_PASSWORD)). It reaches C(redis-cli) as
        C(REDISCLI_AUTH) in its environment (C(docker exec -e REDISCLI_AUTH) in O(mode=docker)),
        never on a command line, and never appears in results or logs.
    type: str
    default: ""
  login_unix_socket:
    description: Path of the server's Unix socket; when set, O(login_host) and O(login_port) are not used.
    type: str
    default: ""
  tls:
    description: Connect with TLS (C(redis-cli --tls)).
    type: bool
    default: false
  ca_cert:
    description: CA bundle that verifies the server's certificate, for O(tls).
    type: str
    default: ""
  client_cert:
    description: Client certificate, for servers that require one (C(tls-auth-clients)).
    type: str
    default: ""
  client_key:
    description: Private key of O(client_cert) (a path; the key itself is never read by the module).
    type: str
    default: ""
  validate_certs:
    description: Verify the server's certificate; V(false) adds C(--insecure).
    type: bool
    default: true
  connect_timeout:
    description: Seconds to wait for the server's first answer.
    type: int
    default: 10
"""
