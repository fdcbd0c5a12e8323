# -*- coding: utf-8 -*-
# Copyright (c) cclite.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Shared option documentation: the bucket, prefix, endpoint, credentials and encryption of every S3 module."""

from __future__ import annotations


class ModuleDocFragment:
    # Matches _s3.connection_argument_spec().
    DOCUMENTATION = r"""
options:
  bucket:
    description: The bucket that holds the off-site copies (the guide's C(AWS_S3_BUCKET)).
    type: str
    required: true
  prefix:
    description:
      - Key prefix of the copies. Each store's copies are under C(<prefix>/<store>/), with the
        same file names as in the local catalog, each next to its C(.manifest.json).
    type: str
    default: cc-lite/backups
  host:
    description:
      - The inventory name of the host whose copies these are. Copies whose manifest names
        another host (manifests with a C(run_id) name their host) are left out of every listing,
        so they are never fetched, checked or pruned as this host's. Copies without one (the
        guide's scripts, older manifests) count as this host's.
      - Empty disables the filter.
    type: str
    default: ""
  host_dir:
    description:
      - Put the host (O(host)) into the keys, C(<prefix>/<host>/<store>/<file>), so several
        hosts sharing one bucket and prefix never share a key. Off keeps the guide's layout
        C(<prefix>/<store>/<file>), right for one host per bucket and prefix.
    type: bool
    default: false
  endpoint_url:
    description:
      - URL of an S3-compatible endpoint (MinIO, Ceph, a test server). Empty uses AWS.
    type: str
    default: ""
  region:
    description: Region of the bucket. Empty uses the usual AWS sources (C(AWS_REGION), profile).
    type: str
    default: ""
  access_key:
    description:
      - Access key id. Empty uses the usual AWS sources - the environment, C(~/.aws), an
        instance or task role. Give it from a vaulted variable; it is never logged.
    type: str
    default: ""
    aliases: [aws_access_key]
  secret_key:
    description: Secret access key, with O(access_key). Never logged.
    type: str
    default: ""
    aliases: [aws_secret_key]
  session_token:
    description: Session token of temporary credentials. Never logged.
    type: str
    default: ""
  profile:
    description: Named profile of C(~/.aws/config) on the managed host.
    type: str
    default: ""
  addressing_style:
    description:
      - V(path) puts the bucket in the URL path (C(http://host/bucket/key)), as MinIO and most
        S3-compatible stores want; V(virtual) puts it in the host name; V(auto) lets boto3 choose.
    type: str
    choices: [auto, path, virtual]
    default: auto
  validate_certs:
    description: Check the endpoint's TLS certificate.
    type: bool
    default: true
  ca_bundle:
    description: CA bundle to check the endpoint's certificate with.
    type: path
    default: ""
  retries:
    description: Attempts per S3 call (boto3's standard retry mode, with backoff).
    type: int
    default: 5
  encryption_key:
    description:
      - Key of the client-side encryption, at least 32 characters of random key material (for
        example C(openssl rand -base64 32)), from a vaulted variable. Never logged, never stored;
        manifests record only its key id, an HMAC of the key.
      - Copies encrypted with it are decrypted transparently when checked or downloaded; a copy
        encrypted with another key fails before any byte is downloaded.
    type: str
    default: ""
  encryption_key_file:
    description: A file on the managed host that holds the key, instead of O(encryption_key).
    type: path
    default: ""
requirements:
  - boto3 on the managed host (python3-boto3, or pip install boto3)
  - cryptography on the managed host when encryption is used (python3-cryptography)
"""

    # the options of _remote.min_size_argument_spec(): modules that judge copies without a manifest
    MIN_SIZE = r"""
options:
  min_size_bytes:
    description:
      - Size floor per store (V(postgresql), V(redis), V(qdrant)) of the copies without a manifest
        on S3 (made by the guide's scripts); a smaller one is bad. Copies with a manifest are held
        to the size it records instead.
      - Defaults to V(1024) for postgresql and qdrant and V(128) for redis, the store roles' floors.
    type: dict
    default: {}
"""
