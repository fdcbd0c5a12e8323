# -*- coding: utf-8 -*-
# Copyright (c) cclite.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Shared option documentation: how every PostgreSQL module reaches the server (docker or host mode, login options)."""

from __future__ import annotations


class ModuleDocFragment:
    # Matches _postgres.connection_argument_spec().
    DOCUMENTATION = r"""
options:
  mode:
    description:
      - Where the PostgreSQL client tools run.
      - V(docker) runs them inside O(container) on the managed host through C(docker exec), so
        their version always matches the server's.
      - V(host) runs them on the managed host; the server may be local (socket) or remote (TCP).
    type: str
    choices: [docker, host]
    default: docker
  container:
    description: Name of the PostgreSQL container, for O(mode=docker).
    type: str
    default: cc-lite-postgres
  container_user:
    description: OS user the tools run as inside the container (C(docker exec -u)).
    type: str
    default: postgres
  run_as:
    description:
      - For O(mode=host), run the tools as this OS user (through C(runuser)), for example
        V(postgres) for peer authentication on the local socket. Empty runs them as the
        connecting user.
    type: str
    default: ""
  login_host:
    description: Host name or address of the server. Empty uses the local Unix socket.
    type: str
    default: ""
  login_port:
    description: Port of the server.
    type: int
    default: 5432
    aliases: [port]
  login_user:
    description: Role to log in as.
    type: str
    default: postgres
  login_password:
    description:
      - Password of O(login_user). It reaches the tools as C(PGPASSWORD) in their
        environment, never on a command line, and never appears in results or logs.
    type: str
    default: ""
  login_unix_socket:
    description: Directory of the server's Unix socket, when not the default.
    type: str
    default: ""
  ssl_mode:
    description: libpq C(sslmode) for TCP connections.
    type: str
    choices: [allow, disable, prefer, require, verify-ca, verify-full]
    default: prefer
  ca_cert:
    description: CA bundle that verifies the server's certificate (libpq C(sslrootcert)).
    type: str
    default: ""
    aliases: [ssl_rootcert]
  maintenance_db:
    description: Database to connect to for server-wide statements (create, rename, drop).
    type: str
    default: postgres
  connect_timeout:
    description: Seconds to wait for a connection.
    type: int
    default: 10
"""
