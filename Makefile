# The two commands are `make run` and `make test`; both set the environment up from nothing.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip -q --disable-pip-version-check
# Every dependency pinned with the hashes of its files: the dev lock (tests, lint, the dev
# stack, tracing, containers) and the runtime lock the image installs. `make lock` writes both.
DEV_LOCK := requirements-dev.lock
RUN_LOCK := requirements.lock
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml $(DEV_LOCK) | cksum | cut -d' ' -f1)
# One lock for Linux and macOS (every file's hash, markers where they differ), resolved for
# the oldest supported Python; setuptools (the build backend) is locked too.
LOCK   := echo 'setuptools>=68' | $(BIN)/uv pip compile pyproject.toml - --universal \
          --python-version 3.11 --generate-hashes --quiet
DEV_EXTRAS := --extra dev --extra embedded --extra tracing --extra containers

.PHONY: run demo test test-containers lint format bench chaos lock clean venv

$(STAMP): pyproject.toml $(DEV_LOCK)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) install --require-hashes --no-deps -r $(DEV_LOCK)
	$(PIP) install --no-deps --no-build-isolation -e .
	$(PIP) check
	rm -f $(VENV)/.installed-* && touch $(STAMP)

venv: $(STAMP)

run: venv  ## start broker, PostgreSQL and the four services; Ctrl-C stops all
	$(BIN)/python -m tooling.devstack

demo: venv  ## load a two-year synthetic history into the stack `make run` keeps running
	$(BIN)/python -m tooling.cli demo --customers $${CUSTOMERS:-3000} --seed $${SEED:-1}

test: venv  ## the whole suite: unit, integration (real broker + PostgreSQL), end-to-end
	$(BIN)/python -m pytest

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy shared services tooling clients/python/crm_client

format: venv
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

bench: venv  ## benchmarks against this machine's ceilings; never part of `make test`
	$(BIN)/python -m bench.run

test-containers: venv  ## the integration suite on Kafka and PostgreSQL containers (needs Docker)
	bash scripts/test-containers.sh

chaos: venv  ## faults under load for CHAOS_SECONDS (default 300); a short run is in `make test`
	CHAOS_SECONDS=$${CHAOS_SECONDS:-300} $(BIN)/python -m pytest tests/chaos -q -s

# Not on `venv`: a pyproject.toml that gained a dependency must not block its own lock.
lock:  ## pin every dependency with hashes, keeping current pins (UPGRADE=1: the newest)
	test -x $(BIN)/uv || { test -x $(BIN)/python || $(PYTHON) -m venv $(VENV); \
	  $(PIP) install --require-hashes --no-deps -r $(DEV_LOCK); }
	$(LOCK) $(DEV_EXTRAS) $(if $(UPGRADE),--upgrade,-c $(DEV_LOCK)) -o $(DEV_LOCK)
	$(LOCK) --extra tracing -c $(DEV_LOCK) -o $(RUN_LOCK)

clean:
	rm -rf $(VENV) .data .pytest_cache .mypy_cache .ruff_cache
