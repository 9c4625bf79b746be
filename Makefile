# Two commands on a fresh machine: `make demo` and `make test`. Both create .venv when missing.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
EXTRAS ?= dev
STAMP := $(VENV)/.installed-$(EXTRAS)

.PHONY: setup demo demo-video web test lint clean-demo

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

# The web demo over the raw-video demo's checkpoints (scripts/demo_video.py builds them the first time:
# about 2-3 min on a CPU). WEB_ARGS adds flags, e.g. make web WEB_ARGS="--port 8000".
DEMO_VIDEO := runs/demo_video
WEB_ARGS ?=

$(DEMO_VIDEO)/train/masn/checkpoints/best.pt: | $(STAMP)
	$(PY) scripts/demo_video.py --out $(DEMO_VIDEO)

web: $(STAMP) $(DEMO_VIDEO)/train/masn/checkpoints/best.pt
	$(PY) -m webdemo --avst-checkpoint $(DEMO_VIDEO)/train/avst/checkpoints/best.pt \
		--masn-checkpoint $(DEMO_VIDEO)/train/masn/checkpoints/best.pt --videos $(DEMO_VIDEO)/videos \
		--random-init --num-clips 3 --clip-len 8 --det-min-size 96 --det-max-size 128 $(WEB_ARGS)
