PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install test test-matrix nats-servers lint demo schema clean bench

# The suites that `make test-matrix` runs on every supported nats-server release
# (tests/harness/releases.py MATRIX; `make test-matrix VERSIONS="2.10.26 2.15.1"`).
MATRIX_TESTS ?= tests/test_fidelity.py tests/test_sets.py tests/test_mutability.py \
	tests/test_roundtrip.py tests/test_cluster.py tests/test_domains.py tests/test_harness.py \
	tests/test_buckets.py tests/test_status.py tests/test_backup.py \
	tests/test_lock.py tests/test_lock_topologies.py tests/test_accounts_e2e.py \
	tests/test_drift.py tests/test_topologies.py tests/test_server_limits.py \
	tests/test_subject_transforms.py
VERSIONS ?=

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	$(BIN)/python -m compileall -q reconciler  # as pip does for an installed package
	touch $(STAMP)

test: install
	$(BIN)/python -m pytest -q -n 2 tests

nats-servers: install
	$(BIN)/python tests/harness/releases.py $(VERSIONS)

test-matrix: install
	$(BIN)/python tests/harness/releases.py --run $(VERSIONS) -- -q -n 2 $(MATRIX_TESTS)

lint: install
	$(BIN)/ruff check reconciler tests bench
	$(BIN)/ruff format --check reconciler tests bench
	$(BIN)/mypy

schema: install
	$(BIN)/jsops schema --out schemas

demo: install
	$(BIN)/python -m reconciler.demo

bench: install
	$(BIN)/python bench/plan_apply.py --scale 1 10 --write-docs

clean:
	rm -rf $(VENV) .data .cache
