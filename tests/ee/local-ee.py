"""Write the local build definition of execution-environment.yml: same dependencies, local sources.

Galaxy and the registries are unreachable here, so the build differs from the shipped file in
where things come from, and only there: the base image is cclite-ee-base:bookworm (built locally,
pip pointed at a wheelhouse inside it), the collections are the ones of the `ansible` bundle in
.collections/ (type dir) and the cclite.backup tarball of `make build` (type file), and the
python interpreter is a venv of Debian's python3.11 in the base image (the shipped file installs
python3.11 from CentOS).
Usage: local-ee.py SHIPPED_YML OUT_DIR COLLECTIONS_ROOT
"""

import shutil
import sys
from pathlib import Path

import yaml


def main():
    """Read the shipped definition, write the local one and copy the collections."""
    shipped, out, collections = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
    ee = yaml.safe_load(shipped.read_text(encoding="utf-8"))
    deps = ee["dependencies"]

    ee["images"]["base_image"]["name"] = "cclite-ee-base:bookworm"
    deps["python_interpreter"] = {"python_path": "/opt/ee-python/bin/python3"}
    # The test reaches the managed containers through the docker_api connection, which needs requests.
    deps["python"] = list(deps.get("python", [])) + ["requests"]

    files = list(ee.get("additional_build_files", []))
    wanted = []
    # The test (not the shipped content) reaches the managed containers through community.docker's
    # docker_api connection: the local EE carries that collection too, as tests/requirements.yml says.
    for entry in list(deps["galaxy"]["collections"]) + [{"name": "community.docker"}]:
        name = entry["name"]
        if entry.get("type") == "file":
            wanted.append(entry)
            continue
        namespace, coll = name.split(".")
        src = collections / namespace / coll
        if not (src / "MANIFEST.json").is_file():
            sys.exit(f"local-ee: {name} is not in {collections} (run make setup)")
        dest = out / "collections" / namespace / coll
        shutil.copytree(src, dest, symlinks=False)
        wanted.append({"name": f"/build/collections/{namespace}/{coll}", "type": "dir"})
    deps["galaxy"] = {"collections": wanted}
    files.append({"src": "collections", "dest": "collections"})
    ee["additional_build_files"] = files

    # Collection dependencies outside the list (community.docker's inventory filter) are not in
    # the bundle subset: install the listed ones as they are.
    ee.setdefault("build_arg_defaults", {})["ANSIBLE_GALAXY_CLI_COLLECTION_OPTS"] = "--no-deps"
    # Debian: apt-get, were a system package missing (bindep entries of the shipped file are rpm-only).
    ee.setdefault("options", {})["package_manager_path"] = "/usr/bin/apt-get"

    (out / "execution-environment.yml").write_text(yaml.safe_dump(ee, sort_keys=False), encoding="utf-8")
    print(f"local-ee: wrote {out / 'execution-environment.yml'}")


if __name__ == "__main__":
    main()
