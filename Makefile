# `make serve` and `make test` do every set-up step on a fresh machine.
VENV ?= .venv
PYTHON ?= python3
STAMP := $(VENV)/.installed

.PHONY: serve test lint bench docs clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[test]'
	touch $(STAMP)

serve: $(STAMP)
	$(VENV)/bin/mediaguard serve

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/mypy

test: $(STAMP) lint
	bash scripts/start-services.sh
	$(VENV)/bin/pytest -q

bench: $(STAMP)
	$(VENV)/bin/python bench/score_throughput.py
	$(VENV)/bin/python bench/lookup_throughput.py
	$(VENV)/bin/python bench/pdq_index.py

docs: $(STAMP)
	$(VENV)/bin/python scripts/cli_reference.py > docs/cli.md

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
