# Two commands do all the set-up on a fresh machine with only Python 3.11 and pip:
#   make demo   - the real job against the local sandbox
#   make test   - the full test suite
# Contributors: make check (lint, format, types) and make test-fast (everything not marked slow).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PACKAGES := sandbox tap-customerio-people mapper-emailverify target-customerio-ev
STAMP := $(VENV)/.installed

.PHONY: install check test test-fast demo bench clean browser postgres

$(STAMP): $(foreach p,$(PACKAGES),$(p)/pyproject.toml) requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip uv
	$(BIN)/uv pip install --quiet --python $(BIN)/python $(foreach p,$(PACKAGES),-e ./$(p)) -r requirements-dev.txt
	touch $(STAMP)

install: $(STAMP)

check: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# The HTML report's browser test needs Chromium: installed here when missing (as root, apt-get).
browser:
	@sh scripts/ensure_chromium.sh

# The cache_url tests start a throwaway PostgreSQL: installed here when missing (as root, apt-get).
postgres:
	@sh scripts/ensure_postgres.sh

test: $(STAMP) browser postgres
	$(BIN)/python -m pytest -n 2 --dist loadfile

test-fast: $(STAMP) browser postgres
	$(BIN)/python -m pytest -n 2 --dist loadfile -m "not slow"

demo: $(STAMP)
	$(BIN)/cio-sandbox demo

bench: $(STAMP)
	$(BIN)/python benchmarks/run.py

clean:
	rm -rf $(VENV) .pytest_cache
