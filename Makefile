PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
# The browser tests drive Debian's chromium; Playwright downloads no browser.
CHROMIUM ?= /usr/bin/chromium
export CHROMIUM
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD := 1

.PHONY: install run test fuzz sweep catch-up bench soak clean chromium

# A virtualenv with the pinned requirements, rebuilt when they change.
$(INSTALLED): requirements.txt requirements-dev.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $(INSTALLED)

install: $(INSTALLED)

run: $(INSTALLED)
	$(BIN)/python -m local.run

test: $(INSTALLED) chromium
	BROWSER_TESTS=required $(BIN)/python -m pytest

# Debian's chromium, installed when missing (CI runs as root on Debian).
chromium:
	@if [ ! -x "$(CHROMIUM)" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "Installing Debian's chromium for the browser tests (a minute or two, once)"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
	      chromium >/dev/null || exit 1; \
	  else \
	    echo "The browser tests need Chromium at $(CHROMIUM): install Debian's chromium" \
	         "(sudo apt-get install chromium) or set CHROMIUM=/path/to/chromium" >&2; \
	    exit 1; \
	  fi; \
	fi

# schemathesis against openapi.yaml and a local stack of its own, on free ports.
fuzz: $(INSTALLED)
	$(BIN)/python -m fuzz

# Runs expire_access once against the local stack `make run` is serving.
sweep: $(INSTALLED)
	$(BIN)/python -m local.sweep

# Runs catch_up once against the local stack `make run` is serving.
catch-up: $(INSTALLED)
	$(BIN)/python -m local.catch_up

bench: $(INSTALLED)
	$(BIN)/python -m bench

# Starts its own local stack on free ports; a few minutes.
soak: $(INSTALLED)
	$(BIN)/python -m soak

clean:
	rm -rf $(VENV) .pytest_cache .fuzz .browser
