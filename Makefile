# Entry points for developers and CI (.ci/run). `make demo` and `make test` set up what they
# need first (system packages, venv, collections, Docker engine, local images), skipping what is
# there. `make test` runs lint, sanity, units, integration, runner, the reduced fault suite,
# molecule and ee in that order and stops at the first failure.

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := $(CURDIR)/.venv
export PATH := $(VENV)/bin:$(PATH)
export ANSIBLE_COLLECTIONS_PATH := $(CURDIR)/.collections
export MOLECULE_GLOB := molecule/*/molecule.yml

# Extra arguments, for example: make sanity SANITY_ARGS='--test pep8'
SANITY_ARGS ?=
UNITS_ARGS ?=
# pytest suites outside ansible-test's layout, run directly by `make units`.
PYTEST_DIRS ?= $(wildcard tests/qdrant_server_tests)
# The shipped playbooks run through ansible-runner, as AWX runs them (`make runner`).
RUNNER_ARGS ?=
INTEGRATION_ARGS ?=
BENCH_ARGS ?=
# Scenarios under molecule/ that `make molecule` leaves out, e.g. MOLECULE_SKIP='smoke'.
MOLECULE_SKIP ?=
SCENARIOS := $(filter-out $(MOLECULE_SKIP),$(patsubst molecule/%/molecule.yml,%,$(wildcard molecule/*/molecule.yml)))

# The stages of `make test`, in order; each is a target below.
TEST_STAGES ?= lint sanity units integration runner faults-reduced molecule progress ee
# Shell scripts `make lint` checks with shellcheck.
SHELL_SCRIPTS := .ci/run $(wildcard tests/harness/*.sh tests/stack/*.sh tests/ee/*.sh scripts/*.sh)

.PHONY: help system setup venv collections docker image stack-images ee lint sanity units integration runner molecule test build demo demo-clean bench faults faults-reduced progress

help:
	@echo 'make demo | demo-clean | test | system | setup | docker | image | stack-images | lint | sanity | units | integration | runner | faults | molecule | progress | ee | build | bench'

# Debian packages from tests/harness/system-packages.txt (the one list; add packages there).
system:
	@tests/harness/system-packages.sh

setup: system venv collections

# The venv records the requirements.txt it was made from; same content, nothing to do.
venv:
	@if [ -x $(VENV)/bin/python ] && cmp -s requirements.txt $(VENV)/.requirements; then \
	  echo "setup: the venv $(VENV) has every package of requirements.txt"; \
	else \
	  echo "setup: installing requirements.txt into the venv $(VENV)"; \
	  $(PYTHON) -m venv $(VENV); \
	  $(VENV)/bin/python -m pip install -q -r requirements.txt; \
	  cp requirements.txt $(VENV)/.requirements; \
	fi

collections:
	@tests/harness/collections.sh

docker: system
	@tests/harness/docker-up.sh

image: docker
	@tests/harness/build-image.sh

# The guide's stack (tests/stack/) on the test image: the demo's, and later a scenario's.
stack-images: image
	@tests/harness/build-stack-images.sh

lint:
	ansible-lint --profile production
	shellcheck -x $(SHELL_SCRIPTS)

sanity:
	tests/harness/sanity.sh $(SANITY_ARGS)

units:
	tests/harness/units.sh $(UNITS_ARGS)
	$(if $(PYTEST_DIRS),tests/harness/pytest.sh -p no:cacheprovider $(PYTEST_DIRS))

# Integration targets start containers from the test image.
integration: image
	tests/harness/integration.sh $(INTEGRATION_ARGS)

# ansible-runner jobs against a PostgreSQL started by the tests, with a local webhook server;
# the restore drills (test_drill.py) on the guide's stack image.
runner: stack-images
	tests/harness/pytest.sh -p no:cacheprovider tests/runner $(RUNNER_ARGS)

molecule: image
	@echo 'Scenarios: $(SCENARIOS) (skipped: $(or $(MOLECULE_SKIP),none))'
	for s in $(SCENARIOS); do \
	  echo "=== molecule test -s $$s ($$(date +%T))"; \
	  molecule test -s "$$s"; \
	done

# Long backups and restores on the guide's stack (enough data that each runs for seconds):
# progress lines with growing bytes and the expected size, private status files that go away,
# the same results; and backup_consistent_set's pause around every store's point in time. It runs
# its own stack (CCLITE_STACK=cclite-progress, ports 16337 and 18000): no lock needed.
progress: stack-images
	python3 tests/harness/progress_test.py

# The AWX execution environment built with ansible-builder from execution-environment.yml
# (offline: local base image, wheels and collections), then backup, verify and restore run
# inside it through ansible-runner's process isolation against the guide's stack.
ee: stack-images
	@tests/harness/build-ee.sh
	tests/ee/run-ee.sh

# Each stage's duration is printed at the end (also when a stage fails).
test: setup image
	@times=(); trap 'printf "=== make %s\n" "$${times[@]}"' EXIT; \
	for t in $(TEST_STAGES); do \
	  echo "=== make $$t ($$(date +%T))"; start=$$SECONDS; \
	  $(MAKE) --no-print-directory $$t; \
	  times+=("$$(printf '%-12s %5ss' "$$t" $$((SECONDS - start)))"); \
	done

build:
	tree=$$(mktemp -d); trap 'rm -rf "$$tree"' EXIT; \
	ansible-galaxy collection build --force --output-path $(CURDIR)/dist "$$(tests/harness/collection-tree.sh "$$tree")"

# The guide's stack in Docker with sample data, then examples/workstation/'s playbooks: backup,
# verify, list, a disaster, the recovery with dr.yml, the data checked back. Ports: CCLITE_DEMO_QDRANT_PORT
# (6337), CCLITE_DEMO_BACKEND_PORT (8000). The stack keeps running until `make demo-clean`.
demo: setup stack-images
	@tests/harness/demo.sh

demo-clean:
	@tests/harness/demo-clean.sh

# The one bench (every engine, backup and restore, scaling, memory), e.g.
# make bench BENCH_ARGS='--quick' (a smoke test of a few minutes) or BENCH_ARGS='--size-mb 256 --rounds 2'
bench:
	python bench/bench_all.py $(BENCH_ARGS)

# The fault suite (tests/faults/): real PostgreSQL and Redis and the project's Qdrant-compatible
# server started by the tests, kills of every stage at random points and of a whole
# ansible-playbook run, disk full, read-only root, server down, wrong credentials, corruption,
# two runs at once, bad input; prints its figures. `make faults` runs the full matrix (>= 10
# trials per kill stage); `make faults FAULTS=reduced` the few-minute one that `make test` runs.
# Needs root (tmpfs mounts; runs the server as the postgres user).
FAULTS ?= full
faults:
	CCLITE_FAULTS=$(FAULTS) tests/harness/pytest.sh -p no:cacheprovider -q tests/faults

faults-reduced:
	$(MAKE) --no-print-directory faults FAULTS=reduced
