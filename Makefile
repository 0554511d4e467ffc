# Two commands do all the set-up on a fresh machine with only Python 3.11 and pip:
#   make demo   - the real job against the local sandbox
#   make test   - the full test suite
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PACKAGES := sandbox tap-customerio-people mapper-emailverify target-customerio-ev
STAMP := $(VENV)/.installed

.PHONY: install test demo bench clean

$(STAMP): $(foreach p,$(PACKAGES),$(p)/pyproject.toml) requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip uv
	$(BIN)/uv pip install --quiet --python $(BIN)/python $(foreach p,$(PACKAGES),-e ./$(p)) -r requirements-dev.txt
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest

demo: $(STAMP)
	$(BIN)/cio-sandbox demo

bench: $(STAMP)
	$(BIN)/python benchmarks/run.py

clean:
	rm -rf $(VENV) .pytest_cache
