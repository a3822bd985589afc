PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed

.PHONY: install run test fuzz sweep catch-up bench soak clean

# A virtualenv with the pinned requirements, rebuilt when they change.
$(INSTALLED): requirements.txt requirements-dev.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $(INSTALLED)

install: $(INSTALLED)

run: $(INSTALLED)
	$(BIN)/python -m local.run

test: $(INSTALLED)
	$(BIN)/python -m pytest

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
	rm -rf $(VENV) .pytest_cache .fuzz
