# Reindexer: `make run` serves the dashboard with a worker; `make test` runs every gate.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export REINDEXER_DATA_DIR ?= $(CURDIR)/var

.PHONY: run test lint typecheck migrations-check pytest pytest-postgres bench chromium clean demo

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[test,minilm,pdf,pgvector,milvus]'
	touch $(STAMP)

# Debian's Chromium for the browser tests (Playwright cannot download its own here).
chromium:
	@command -v chromium >/dev/null 2>&1 || { \
	  echo "installing Debian's chromium for the browser tests"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy reindexer dashboard tests

# Fails when a model change has no migration; against a throwaway data dir and SQLite database.
migrations-check: $(STAMP)
	@tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && \
	  env -u DATABASE_URL REINDEXER_DATA_DIR="$$tmp" \
	  $(BIN)/python manage.py makemigrations --check --dry-run

# With a coverage report of this process (see .coveragerc); worker subprocesses are not measured.
pytest: $(STAMP) chromium
	$(BIN)/pytest -p no:cacheprovider --cov=reindexer --cov=dashboard --cov-report=term

# The same suite again on the PostgreSQL server this machine runs (127.0.0.1:5432); the browser
# tests and the server-store and model tests ("backends") need no second job database.
pytest-postgres: $(STAMP) chromium
	@$(BIN)/python -c "import psycopg; psycopg.connect('postgresql://postgres@127.0.0.1:5432/postgres', connect_timeout=5).close()" \
	  || { echo "PostgreSQL is not reachable at 127.0.0.1:5432 (user postgres); the PostgreSQL run of the suite needs it" >&2; exit 1; }
	DATABASE_URL=postgres://postgres@127.0.0.1:5432/reindexer $(BIN)/pytest -p no:cacheprovider -m "not browser and not backends"

test: lint typecheck migrations-check pytest pytest-postgres

demo: $(STAMP)
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py reindex_demo

run: demo
	@echo
	@echo "Reindexer dashboard: http://127.0.0.1:$${REINDEXER_PORT:-8000}/  (log in as 'operator' with the password above; Ctrl-C stops web and worker)"
	@echo
	$(BIN)/honcho start

bench: $(STAMP) chromium
	$(BIN)/python bench/throughput.py
	$(BIN)/python bench/latency.py
	$(BIN)/python bench/memory.py
	$(BIN)/python bench/push_rate.py
	$(BIN)/python bench/fanout.py
	$(BIN)/python bench/chart.py
	$(BIN)/python bench/sql_source.py
	env -u DATABASE_URL $(BIN)/python bench/store_throughput.py
	$(BIN)/python bench/slices.py
	$(BIN)/python bench/pickup.py
	env -u DATABASE_URL HF_HUB_OFFLINE=1 $(BIN)/python bench/pipeline.py
	env -u DATABASE_URL $(BIN)/python bench/incremental_rerun.py
	env -u DATABASE_URL $(BIN)/python bench/throttle.py
	env -u DATABASE_URL $(BIN)/python bench/swap_availability.py
	env -u DATABASE_URL $(BIN)/python bench/pages.py
	DATABASE_URL=postgres://postgres@127.0.0.1:5432/reindexer_bench $(BIN)/python bench/pages.py
	env -u DATABASE_URL $(BIN)/python bench/list_queries.py
	DATABASE_URL=postgres://postgres@127.0.0.1:5432/reindexer_bench_list $(BIN)/python bench/list_queries.py
	env -u DATABASE_URL $(BIN)/python bench/queue_page.py
	DATABASE_URL=postgres://postgres@127.0.0.1:5432/reindexer_bench_queue $(BIN)/python bench/queue_page.py
	env -u DATABASE_URL $(BIN)/python bench/api_bodies.py
	DATABASE_URL=postgres://postgres@127.0.0.1:5432/reindexer_bench $(BIN)/python bench/api_bodies.py

clean:
	rm -rf $(VENV) var
