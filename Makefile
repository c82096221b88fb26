# Two commands: `make run` (set up, load the sample data, train, serve) and `make test`.
# Works on a fresh machine with only Python 3.11+; everything else lands in .venv.

PYTHON ?= $(shell for p in python3.13 python3.12 python3.11 python3; do \
	command -v $$p >/dev/null 2>&1 && $$p -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null \
	&& echo $$p && break; done)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-dev
SAMPLE := recsys/data/sample/online_retail_sample.csv.gz
HOST ?= 127.0.0.1
PORT ?= 8000
export RECSYS_HOME ?= .recsys
# One BLAS thread per process: a multi-threaded BLAS inside a web server's thread pool
# collapses throughput; training sets its own thread count explicitly.
export OPENBLAS_NUM_THREADS ?= 1
export OMP_NUM_THREADS ?= 1

.PHONY: setup run test lint typecheck pytest bench bench-smoke clean

$(STAMP): pyproject.toml
	@test -n "$(PYTHON)" || { echo "error: Python 3.11 or newer is required" >&2; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $@

setup: $(STAMP)

# The sample is loaded once per state folder (again only when the file changes): a reload
# would store nothing twice, but it costs time on every `make run`.
LOADED := $(RECSYS_HOME)/.sample-loaded

$(LOADED): $(SAMPLE) | $(STAMP)
	$(BIN)/recsys ingest $(SAMPLE) --format online-retail
	@mkdir -p $(dir $@) && touch $@

# Repeatable: trains only when nothing is trained yet or the data or config changed
# (--if-changed), and always ends serving: when training fails or the promotion gate refuses
# the new version, the current version serves (and only with no version at all does it stop).
run: setup $(LOADED)
	$(BIN)/recsys train --if-changed || { $(BIN)/recsys models show >/dev/null 2>&1 \
		&& echo "make run: no new version promoted; serving the current one" >&2; }
	@echo
	@echo "Serving on http://$(HOST):$(PORT)  (OpenAPI: http://$(HOST):$(PORT)/docs). Try:"
	@echo "  curl 'http://$(HOST):$(PORT)/v1/users/12347/recommendations?k=5'"
	@echo "  curl 'http://$(HOST):$(PORT)/v1/items/85123A/bought-together?k=5'"
	@echo
	$(BIN)/recsys serve --host $(HOST) --port $(PORT)

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: setup
	$(BIN)/mypy

pytest: setup
	$(BIN)/pytest

test: lint typecheck pytest

bench: setup
	$(BIN)/python -m benchmarks.run

bench-smoke: setup
	$(BIN)/python -m benchmarks.run --smoke

clean:
	rm -rf $(VENV) .recsys .pytest_cache .mypy_cache .ruff_cache
