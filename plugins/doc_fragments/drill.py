# -*- coding: utf-8 -*-
# Copyright (c) cclite.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Shared option documentation of restore drills (the ``drill`` options of every restore module)."""

from __future__ import annotations


class ModuleDocFragment:
    # Matches _module_restore.drill_argument_spec().
    DOCUMENTATION = r"""
options:
  drill:
    description:
      - Run a restore drill instead of a restore - the same restore flow into a throwaway target
        that never touches production, compared with the manifest (every count, and a sample
        of the data), then removed, also on failure. O(confirm) and O(safety_backup) do not
        apply; production is only read (C(docker container inspect) of its container).
      - The target is a container from the production container's image (with its command and
        environment, handed over in a 0600 env file), on a private internal network of its own,
        with no published ports and the memory limit O(drill_memory); or the dedicated drill
        server O(drill_target). PostgreSQL in host mode (C(mode=host)) gets a scratch cluster from
        the server's own binaries (C(/usr/lib/postgresql/<major>/bin)) in a temp directory on a free
        port, socket only; Redis in host mode a scratch C(redis-server) from the server's own binary
        (its C(INFO server) executable, else C(redis-server) on PATH) in a temp directory, on a Unix
        socket only, which the RDB restore stops and starts instead of the service (refused, naming
        the fix, when C(redis-server) is not installed); Qdrant in host mode needs O(drill_target).
      - A drill that cannot run (no image, not enough memory, no docker) fails and says why.
    type: bool
    default: false
  drill_container:
    description:
      - The production container whose image, command and environment the drill container
        copies. Empty means the module's own container option (Qdrant has none - set it).
    type: str
    default: ""
  drill_image:
    description: Another image for the drill container (default - the production container's).
    type: str
    default: ""
  drill_memory:
    description: Memory limit of the drill container (C(512m), C(2g)); refused when the host has less available.
    type: str
    default: 1g
  drill_start_timeout:
    description: Seconds to wait for the server in the drill container to answer.
    type: int
    default: 120
  drill_target:
    description:
      - A dedicated drill server instead of a throwaway container - connection options of the
        module (for example C(login_host), C(login_port) or C(url)) that replace the production
        ones. What the drill restored there is removed afterwards.
    type: dict
  drill_set:
    description:
      - The backup set (run id) to drill - this store's backup in that set (its manifest's
        C(run_id), or for backups without one its file name's stamp), which must be good, else the
        drill fails naming the set and what it lacks; V(random) picks a random backup older than
        the newest. Empty - O(name).
      - When O(name) names a file, that file is drilled and the set only recorded - C(verify.yml)
        resolves the set over every requested store with M(cclite.backup.backup_set_info) (which
        refuses a set that is not complete) and names each store's file of it.
      - Recorded in RV(drill).
    type: str
    default: ""
"""
