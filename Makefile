# The two commands are `make run` and `make test`; both set the environment up from nothing.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml constraints.txt | cksum | cut -d' ' -f1)

.PHONY: run test test-containers lint format bench chaos lock clean venv

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check -c constraints.txt -e '.[dev]'
	rm -f $(VENV)/.installed-* && touch $(STAMP)

venv: $(STAMP)

run: venv  ## start broker, PostgreSQL and the four services; Ctrl-C stops all
	$(BIN)/python -m shared.devstack

test: venv  ## the whole suite: unit, integration (real broker + PostgreSQL), end-to-end
	$(BIN)/python -m pytest

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy shared services

format: venv
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

bench: venv  ## benchmarks against this machine's ceilings; never part of `make test`
	$(BIN)/python -m bench.run

test-containers: venv  ## the integration suite on Kafka and PostgreSQL containers (needs Docker)
	bash scripts/test-containers.sh

chaos: venv  ## faults under load for CHAOS_SECONDS (default 300); a short run is in `make test`
	CHAOS_SECONDS=$${CHAOS_SECONDS:-300} $(BIN)/python -m pytest tests/chaos -q -s

lock: venv  ## re-pin constraints.txt from the current environment
	{ echo "# Pinned versions for every dependency (runtime and dev). Regenerate with: make lock"; \
	  $(BIN)/python -m pip freeze --exclude-editable; } > constraints.txt

clean:
	rm -rf $(VENV) .data .pytest_cache .mypy_cache .ruff_cache
