# `make serve` and `make test` do every set-up step on a fresh machine.
VENV ?= .venv
PYTHON ?= python3
STAMP := $(VENV)/.installed

.PHONY: serve test lint bench docs lock clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -c constraints.txt -e '.[test]'
	touch $(STAMP)

serve: $(STAMP)
	$(VENV)/bin/mediaguard serve

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/mypy

test: $(STAMP) lint
	bash scripts/start-services.sh
	bash scripts/install-browser.sh
	$(VENV)/bin/pytest -q

bench: $(STAMP)
	$(VENV)/bin/python bench/score_throughput.py
	$(VENV)/bin/python bench/lookup_throughput.py
	$(VENV)/bin/python bench/pdq_index.py
	$(VENV)/bin/python bench/pdq_hashing.py
	$(VENV)/bin/python bench/pipeline.py
	$(VENV)/bin/python bench/search_filter.py --postgres postgresql+psycopg://postgres@127.0.0.1/test

docs: $(STAMP)
	$(VENV)/bin/python scripts/cli_reference.py > docs/cli.md

# Newest versions pyproject.toml allows, tested by `make test` before they are committed.
lock:
	rm -rf .lock-venv
	$(PYTHON) -m venv .lock-venv
	.lock-venv/bin/pip install --quiet -e '.[test]'
	(echo "# The versions \`make\` installs, so every set-up runs what the tests ran; \`make lock\` renews them."; \
	 .lock-venv/bin/pip freeze --exclude-editable | grep -v '^mediaguard') > constraints.txt
	rm -rf .lock-venv

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
