# Reindexer: `make run` serves the dashboard with a worker; `make test` runs every gate.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export REINDEXER_DATA_DIR ?= $(CURDIR)/var

.PHONY: run test lint typecheck pytest pytest-postgres bench chromium clean demo

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[test]'
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

pytest: $(STAMP) chromium
	$(BIN)/pytest -p no:cacheprovider

# The same suite again on the PostgreSQL server this machine runs (127.0.0.1:5432).
pytest-postgres: $(STAMP) chromium
	DATABASE_URL=postgres://postgres@127.0.0.1:5432/reindexer $(BIN)/pytest -p no:cacheprovider -m "not browser"

test: lint typecheck pytest pytest-postgres

demo: $(STAMP)
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py reindex_demo

run: demo
	$(BIN)/honcho start

bench: $(STAMP)
	$(BIN)/python bench/throughput.py

clean:
	rm -rf $(VENV) var
