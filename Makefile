# Entry points for developers and CI (.ci/run). Start with `make setup`.
# `make test` runs lint, sanity, units, integration, runner, the reduced fault suite and molecule in that order and stops
# at the first failure.

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

.PHONY: help setup collections docker image lint sanity units integration runner molecule test build demo bench faults faults-reduced

help:
	@echo 'make setup | docker | image | lint | sanity | units | integration | runner | faults | molecule | test | build | demo | bench'

setup: $(VENV)/.requirements collections

$(VENV)/.requirements: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install -q -r requirements.txt
	cp requirements.txt $@

collections:
	tests/harness/collections.sh

docker:
	tests/harness/docker-up.sh

image: docker
	tests/harness/build-image.sh

lint:
	ansible-lint --profile production

sanity:
	tests/harness/sanity.sh $(SANITY_ARGS)

units:
	tests/harness/units.sh $(UNITS_ARGS)
	$(if $(PYTEST_DIRS),tests/harness/pytest.sh -p no:cacheprovider $(PYTEST_DIRS))

# Integration targets start containers from the test image.
integration: image
	tests/harness/integration.sh $(INTEGRATION_ARGS)

# ansible-runner jobs against a PostgreSQL started by the tests, with a local webhook server.
runner:
	tests/harness/pytest.sh -p no:cacheprovider tests/runner $(RUNNER_ARGS)

molecule: image
	@echo 'Scenarios: $(SCENARIOS) (skipped: $(or $(MOLECULE_SKIP),none))'
	for s in $(SCENARIOS); do \
	  echo "=== molecule test -s $$s ($$(date +%T))"; \
	  molecule test -s "$$s"; \
	done

test:
	@for t in lint sanity units integration runner faults-reduced molecule; do \
	  echo "=== make $$t ($$(date +%T))"; \
	  $(MAKE) --no-print-directory $$t; \
	done

build:
	tree=$$(mktemp -d); trap 'rm -rf "$$tree"' EXIT; \
	ansible-galaxy collection build --force --output-path $(CURDIR)/dist "$$(tests/harness/collection-tree.sh "$$tree")"

demo:
	@if [ -x tests/harness/demo.sh ]; then tests/harness/demo.sh; else echo 'demo: tests/harness/demo.sh is not written yet'; fi

# The one bench (every engine, backup and restore, scaling, memory), e.g.
# make bench BENCH_ARGS='--quick' (a smoke test of a few minutes) or BENCH_ARGS='--size-mb 256 --rounds 2'
bench:
	python bench/bench_all.py $(BENCH_ARGS)

# The fault suite (tests/faults/): real PostgreSQL and Redis started by the tests, kills of every
# stage at random points, disk full, read-only root, server down, wrong credentials, corruption,
# two runs at once, bad input; prints its figures. `make faults` runs the full matrix (>= 10
# trials per kill stage); `make faults FAULTS=reduced` the few-minute one that `make test` runs.
# Needs root (tmpfs mounts; runs the server as the postgres user).
FAULTS ?= full
faults:
	CCLITE_FAULTS=$(FAULTS) tests/harness/pytest.sh -p no:cacheprovider -q tests/faults

faults-reduced:
	$(MAKE) --no-print-directory faults FAULTS=reduced
