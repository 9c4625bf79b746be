# Two commands on a fresh machine: `make demo` and `make test`. Both create .venv when missing.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
EXTRAS ?= dev
STAMP := $(VENV)/.installed-$(EXTRAS)

.PHONY: setup demo demo-video test lint clean-demo

$(STAMP): requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade --quiet pip
	$(PY) -m pip install --quiet -r requirements.txt -e ".[$(EXTRAS)]"
	touch $@

setup: $(STAMP)

demo: $(STAMP)
	$(PY) scripts/demo.py

test: $(STAMP)
	$(PY) -m pytest -q
	$(PY) -m ruff check --no-cache .

lint: $(STAMP)
	$(PY) -m ruff check --no-cache .

clean-demo:
	rm -rf data/demo runs/demo

demo-video: $(STAMP)
	$(PY) scripts/demo_video.py
