# Copyright (c) cclite.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Put a file on S3 as the guide's scripts do (``aws s3 cp``: boto3's transfer manager, 8 MiB
parts above 8 MiB, no metadata, no manifest): ENDPOINT BUCKET KEY PATH [MODE].

MODE: ``cp`` (default), ``cut`` (only the first half of the file: a truncated gzip stream), or
``marked`` (a plain PUT with this collection's upload marker: an upload that did not finish).
Credentials come from the environment. Prints the key, size, ETag and sha256 of what was put.
"""
import hashlib
import json
import sys

import boto3
from boto3.s3.transfer import TransferConfig

endpoint, bucket, key, path = sys.argv[1:5]
mode = sys.argv[5] if len(sys.argv) > 5 else "cp"
client = boto3.client("s3", endpoint_url=endpoint)
with open(path, "rb") as handle:
    data = handle.read()
if mode == "cp":
    config = TransferConfig(multipart_threshold=8 * 1024 * 1024, multipart_chunksize=8 * 1024 * 1024)
    client.upload_file(path, bucket, key, Config=config)
elif mode == "cut":
    data = data[: len(data) // 2]
    client.put_object(Bucket=bucket, Key=key, Body=data)
elif mode == "marked":
    client.put_object(Bucket=bucket, Key=key, Body=data, Metadata={"cclite-backup": "0.1.0"})
else:
    sys.exit("unknown mode %s" % mode)
head = client.head_object(Bucket=bucket, Key=key)
print(json.dumps({"key": key, "size": len(data), "etag": head["ETag"].strip('"'), "sha256": hashlib.sha256(data).hexdigest()}))
