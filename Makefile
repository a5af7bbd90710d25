# README's first two commands: `make run` (local stack on 127.0.0.1:3000) and `make test`.
# Both install what they need into .venv first. NOT FOR CLINICAL USE.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test lint checkov openapi test-fast mutation venv chromium build validate layer-size bench train clean

$(STAMP): requirements.txt requirements.lock pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11+ needed"'
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip==25.3
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt -c requirements.lock
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps -e .
	touch $(STAMP)

venv: $(STAMP)

# Debian's Chromium for the browser tests (tests/browser; Playwright drives this binary and
# never downloads a browser of its own). Instant when it is already installed.
CHROMIUM ?= /usr/bin/chromium
chromium:
	@test -x $(CHROMIUM) || { \
	  command -v apt-get >/dev/null || { echo "Chromium is needed at $(CHROMIUM) (set CHROMIUM=/path/to/chromium)" >&2; exit 1; }; \
	  echo "Installing Debian's chromium (browser tests, web page screenshots)..."; \
	  SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium >/dev/null; \
	  test -x $(CHROMIUM); }

run: $(STAMP)
	$(PY) -m scripts.local_stack $(RUN_ARGS)

test: lint checkov chromium
	CHROMIUM=$(CHROMIUM) $(PY) -m pytest

# ruff's rules are in pyproject.toml; `make test` fails on a finding or an unformatted file.
lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

# checkov scans template.yaml (every resource, whatever it holds today) and `make test` fails on any
# finding. A finding that is not fixed is skipped next to its resource with the reason (Metadata:
# checkov: skip: - id, comment); no global skip list. checkov's pins conflict with requirements.lock,
# so it has a virtualenv of its own, installed from requirements-checkov.txt (checkov and every
# dependency pinned). --skip-download: no call to Prisma Cloud (offline, no API key).
CHECKOV_VENV := .venv-tools/checkov
CHECKOV_STAMP := $(CHECKOV_VENV)/.installed
$(CHECKOV_STAMP): requirements-checkov.txt
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11+ needed"'
	test -x $(CHECKOV_VENV)/bin/python || $(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip==25.3
	$(CHECKOV_VENV)/bin/python -m pip install --quiet --disable-pip-version-check -r requirements-checkov.txt
	touch $(CHECKOV_STAMP)

checkov: $(CHECKOV_STAMP)
	$(CHECKOV_VENV)/bin/checkov --file template.yaml --framework cloudformation --skip-download --compact --quiet

# The API's one OpenAPI document (functions/predict/openapi.json), generated from every function's
# routes; run after changing a route, a schema or template.yaml (tests/unit/test_openapi.py fails on a stale file).
openapi: $(STAMP)
	$(PY) -m scripts.openapi

# Contributors' inner loop: unit and integration tests that train nothing and start no stack,
# server or browser, spread over the cores. `make test` still runs everything.
test-fast: $(STAMP)
	$(PY) -m pytest tests/unit tests/integration -m "not slow" -n auto -q

# Mutation testing of the shared package's core (minutes; not part of `make test`). Prints
# the score and the surviving mutants per module; README "Mutation testing" has the last table.
MUTATION_STAMP := $(VENV)/.mutation-installed
$(MUTATION_STAMP): requirements-mutation.txt $(STAMP)
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps -r requirements-mutation.txt
	touch $(MUTATION_STAMP)

mutation: $(MUTATION_STAMP)
	$(PY) -m scripts.mutation $(MUTATION_ARGS)

MODEL ?= breast-cancer
train: $(STAMP)
	$(PY) -m training $(MODEL) --no-publish

build: $(STAMP)
	$(VENV)/bin/sam build

validate: $(STAMP)
	$(VENV)/bin/sam validate --lint --region us-east-1
	$(VENV)/bin/cfn-lint template.yaml

layer-size: build
	$(PY) scripts/layer_size.py

bench: $(STAMP)
	$(PY) -m scripts.bench
	$(PY) -m scripts.bench_images

clean:
	rm -rf .aws-sam build *.egg-info .mutation
