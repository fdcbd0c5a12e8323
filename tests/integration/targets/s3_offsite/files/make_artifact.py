# Copyright (c) cclite.backup contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Write a backup of random (incompressible) data and its manifest into a catalog, as a store
module would: ROOT STORE NAME SIZE [ENDED_ISO]. Prints the artifact's path, size and sha256."""
import datetime
import gzip
import hashlib
import json
import os
import sys

root, store, name, size = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
ended = sys.argv[5] if len(sys.argv) > 5 else datetime.datetime.now(datetime.timezone.utc).isoformat()
directory = os.path.join(root, store)
os.makedirs(directory, mode=0o700, exist_ok=True)
path = os.path.join(directory, name)
with open(path, "wb") as raw:
    with gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=1) as out:
        left = size
        while left > 0:
            out.write(os.urandom(min(left, 1 << 20)))
            left -= 1 << 20
os.chmod(path, 0o600)
with open(path, "rb") as handle:
    data_sha = hashlib.sha256()
    for block in iter(lambda: handle.read(1 << 20), b""):
        data_sha.update(block)
stored = os.path.getsize(path)
manifest = {
    "schema": "cclite.backup/manifest", "version": 1, "kind": "scheduled", "store": store, "host": "it",
    "database": "", "series": "", "format": "test", "compression": {"algorithm": "gzip", "level": 1, "program": "gzip"},
    "artifact": {"name": name, "size": stored, "sha256": data_sha.hexdigest()},
    "started": ended, "ended": ended, "duration_seconds": 0.0, "versions": {}, "source": {}, "encryption": None,
}
with open(path + ".manifest.json", "w") as handle:
    json.dump(manifest, handle, indent=2)
os.chmod(path + ".manifest.json", 0o600)
print(json.dumps({"path": path, "size": stored, "sha256": data_sha.hexdigest()}))
