# Two commands on a fresh machine: `make demo` and `make test`. Every target creates .venv when missing.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
EXTRAS ?= dev,tf,web,clip
STAMP := $(VENV)/.installed-$(EXTRAS)
# test processes (pytest-xdist): one per core, at most 4 (each test process runs torch on one thread)
TEST_WORKERS ?= auto
# The web page's browser test drives Debian's chromium through chromedriver (nothing downloads a browser).
BROWSER_PACKAGES := chromium chromium-driver
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: setup browser demo demo-video web screenshot test lint clean-demo

$(STAMP): requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade --quiet pip
	$(PY) -m pip install --quiet -r requirements.txt -e ".[$(EXTRAS)]"
	touch $@

setup: $(STAMP) browser

browser:
	@if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then :; \
	elif command -v apt-get >/dev/null && { [ -z "$(SUDO)" ] || command -v sudo >/dev/null; }; then \
		$(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq $(BROWSER_PACKAGES); \
	else echo "note: no chromium + chromedriver: the web page's browser test will skip; install $(BROWSER_PACKAGES)"; fi

demo: $(STAMP)
	$(PY) scripts/demo.py

test: setup
	$(PY) -m pytest -q -n $(TEST_WORKERS) --maxprocesses 4 --durations=25
	$(PY) -m ruff check --no-cache .

lint: $(STAMP)
	$(PY) -m ruff check --no-cache .

clean-demo:
	rm -rf data/demo runs/demo runs/demo_video

demo-video: $(STAMP)
	$(PY) scripts/demo_video.py

# The web page over the raw-video demo's checkpoints (scripts/demo_video.py builds them the first time).
# WEB_ARGS adds flags, e.g. make web WEB_ARGS="--port 8000".
DEMO_VIDEO := runs/demo_video
WEB_ARGS ?=

$(DEMO_VIDEO)/train/masn/checkpoints/best.pt: | $(STAMP)
	$(PY) scripts/demo_video.py --out $(DEMO_VIDEO)

web: $(STAMP) $(DEMO_VIDEO)/train/masn/checkpoints/best.pt
	$(PY) -m webdemo --avst-checkpoint $(DEMO_VIDEO)/train/avst/checkpoints/best.pt \
		--masn-checkpoint $(DEMO_VIDEO)/train/masn/checkpoints/best.pt --videos $(DEMO_VIDEO)/videos \
		--random-init --num-clips 3 --clip-len 8 --det-min-size 96 --det-max-size 128 $(WEB_ARGS)

# The README's screenshot of the page (docs/img/web.png), taken in headless chromium.
screenshot: setup
	$(PY) scripts/web_screenshot.py --out docs/img/web.png
