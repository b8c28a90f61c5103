# Two commands on a fresh machine (Python 3.11+ and make): `make demo` and `make test`.
# Each creates the virtualenv and installs the pinned dependencies (requirements.lock) on first use.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: install test check lint typecheck unit fast demo bench serve cluster cluster-test clean

$(STAMP): pyproject.toml requirements.lock
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "saferails needs Python 3.11+")'
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c requirements.lock -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

lint: $(STAMP)
	$(PY) -m ruff check saferails flows tasks blocks deployments demo tests bench

typecheck: $(STAMP)
	$(PY) -m mypy

unit: $(STAMP)
	$(PY) -m pytest -n 2 $(PYTEST_ARGS)

test: lint typecheck unit

# The fast lane: lint, types and every SQLite test not marked `flow` (Prefect), `slow` or `browser`;
# `make test` runs everything, on SQLite and PostgreSQL.
fast: $(STAMP)
	$(PY) -m pytest -n 2 -m "not flow and not slow and not browser" -k "not postgresql" $(PYTEST_ARGS)

check: lint typecheck fast

demo: $(STAMP)
	$(PY) -m demo

bench: $(STAMP)
	$(PY) -m bench

# `make serve PORT=4300 HOST=0.0.0.0`: only from the command line (a shell's own HOST/PORT must not move the server).
SERVE_ENV = $(if $(filter command line,$(origin PORT)),SAFERAILS_SERVE_PORT=$(PORT)) \
	$(if $(filter command line,$(origin HOST)),SAFERAILS_SERVE_HOST=$(HOST))

serve: $(STAMP)
	$(SERVE_ENV) $(PY) -m deployments.serve

# The production shape on this machine: Prefect server on PostgreSQL, process work pool, three workers.
cluster: $(STAMP)
	$(PY) -m deployments.cluster $(CLUSTER_ARGS)

# Scale test of that shape on throw-away databases (not part of `make test`: it takes minutes).
# COUNT=50 for a quick run; the default is 1,000 actions.
COUNT ?= 1000
cluster-test: $(STAMP)
	$(PY) -m deployments.cluster_test --count $(COUNT) $(CLUSTER_TEST_ARGS)

clean:
	rm -rf $(VENV) .saferails .demo .mypy_cache .ruff_cache
