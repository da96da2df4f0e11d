# eseal — the two commands: `make serve` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
HOST   ?= 127.0.0.1
PORT   ?= 8000

.PHONY: serve test lint typecheck bench clean

$(BIN)/eseal: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[dev]"
	@touch $@

## Start the service on its embedded defaults (SQLite + software HSM under ./var, demo region).
serve: $(BIN)/eseal
	$(BIN)/eseal serve --demo --host $(HOST) --port $(PORT)

## Run the whole test suite (SQLite and, when reachable, PostgreSQL at 127.0.0.1:5432).
test: $(BIN)/eseal
	$(BIN)/pytest -q

lint: $(BIN)/eseal
	$(BIN)/ruff check .
	$(BIN)/mypy

bench: $(BIN)/eseal
	$(BIN)/python bench/sm2.py

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
