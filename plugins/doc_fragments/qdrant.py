# -*- coding: utf-8 -*-
# Copyright (c) cclite.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Shared option documentation: how every Qdrant module reaches the server (URL, API key, TLS, timeouts)."""

from __future__ import annotations


class ModuleDocFragment:
    # Matches _qdrant.connection_argument_spec().
    DOCUMENTATION = r"""
options:
  url:
    description:
      - Base URL of the Qdrant REST API as seen from the managed host (the guide's C(QDRANT_PORT)
        is 6337). Use C(https://) for a server with TLS.
      - Must not carry credentials; put the key in O(api_key).
    type: str
    default: http://localhost:6337
  api_key:
    description:
      - Qdrant API key (the server's C(service.api_key); backups and restores need the
        read-write key). Sent in the C(api-key) header only; it never appears in results,
        messages or logs. Empty sends no key.
    type: str
    default: ""
  ca_cert:
    description: CA bundle (a path on the managed host) that verifies the server's TLS certificate.
    type: path
    default: ""
  validate_certs:
    description: Verify the server's TLS certificate. Set V(false) for test servers only.
    type: bool
    default: true
  timeout:
    description:
      - Seconds to wait for the server to answer one request, or to send the next block of a
        download.
    type: int
    default: 60
  snapshot_timeout:
    description:
      - Seconds to wait for a snapshot to be ready (snapshots are created with C(wait=false) and
        the snapshot list is polled), and for an uploaded snapshot to be recovered.
    type: int
    default: 1800
"""
