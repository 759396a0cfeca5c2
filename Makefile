# The two commands a fresh machine needs: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: setup tools redis demo test test-fast lint clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	# torch first, pinned: the CPU wheel on disk, not the CUDA build a loose spec would pull
	$(BIN)/pip install --quiet --disable-pip-version-check torch==2.13.0
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[test]'
	touch $(STAMP)

# Debian's prometheus (the metrics health check is tested against a real one), helm, and
# chromium + chromium-driver (the dashboard's browser tests); each skipped when present.
tools:
	@command -v promtool >/dev/null && command -v prometheus >/dev/null || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get install -y --no-install-recommends prometheus >/dev/null || \
	  echo "prometheus not installed: its tests will be skipped"; }
	@PYTHON=$(BIN)/python scripts/fetch-helm.sh >/dev/null || echo "helm not fetched: chart tests will be skipped"
	@# Debian's headless Chromium and its driver (the dashboard's browser tests, Selenium).
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || { \
	  command -v apt-get >/dev/null || { echo "no apt-get: browser tests will be skipped"; exit 0; }; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get install -y --no-install-recommends chromium chromium-driver >/dev/null || \
	  echo "chromium not installed: browser tests will be skipped"; }

setup: $(STAMP) tools

redis:
	@scripts/ensure-redis.sh

demo: setup redis
	$(BIN)/cortex-school demo

# The gates: layer contracts, types, lint (CI runs them through `make test`).
lint: setup
	$(BIN)/lint-imports
	$(BIN)/mypy cortex_school celeryconfig.py
	$(BIN)/ruff check cortex_school celeryconfig.py

test: lint redis
	$(BIN)/python -m pytest -q

test-fast: setup redis
	$(BIN)/python -m pytest -q -m "not live and not slow"

clean:
	rm -rf $(VENV) .cortex-data .pytest_cache
