# README's first two commands: `make run` (local stack on 127.0.0.1:3000) and `make test`.
# Both install what they need into .venv first. NOT FOR CLINICAL USE.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# Locust's virtualenv (make load, tests/e2e/test_load.py; below), a prerequisite of `make test`.
LOCUST_VENV := .venv-tools/locust
LOCUST_STAMP := $(LOCUST_VENV)/.installed

# A tool's virtualenv of its own, from its fully pinned requirements file: $(call tool_venv,DIR,FILE).
define tool_venv
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11+ needed"'
	test -x $(1)/bin/python || $(PYTHON) -m venv $(1)
	$(1)/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip==25.3
	$(1)/bin/python -m pip install --quiet --disable-pip-version-check -r $(2)
	touch $(1)/.installed
endef

.PHONY: run test lint checkov rehearse openapi test-fast mutation venv chromium build validate layer-size bench load train training-image clean

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

# tests/unit/test_workflows.py runs actionlint (and shellcheck on every `run:` script) on .github/workflows,
# so `make test` fails on a workflow GitHub would reject.
# The e2e and browser tests run in one worker (they share the session's local stacks and trained
# models: tests/conftest.py), the unit and integration tests in the others.
TEST_WORKERS ?= 2
test: lint checkov chromium $(LOCUST_STAMP)
	CHROMIUM=$(CHROMIUM) $(PY) -m pytest -n $(TEST_WORKERS) --dist loadgroup

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
	$(call tool_venv,$(CHECKOV_VENV),$<)

checkov: $(CHECKOV_STAMP)
	$(CHECKOV_VENV)/bin/checkov --file template.yaml --framework cloudformation --skip-download --compact --quiet

# Deploy rehearsal (README "Deploy rehearsal"): sam package, the SAM transform and create_stack in a fresh
# moto, then every logical id, Output and kept property compared with the template, and cfn-lint with the
# serverless rules; what moto cannot check is listed in the report (artifacts/rehearsal/report.md).
# `make test` runs the same rehearsal as tests/integration/test_deploy_rehearsal.py.
rehearse: $(STAMP)
	$(PY) -m scripts.rehearse

# Locust for `make load` and tests/e2e/test_load.py: like checkov, a virtualenv of its own
# (.venv-tools/locust), installed from requirements-locust.txt (locust and every dependency pinned),
# so its gevent and Flask pins never meet requirements.lock.
$(LOCUST_STAMP): requirements-locust.txt
	$(call tool_venv,$(LOCUST_VENV),$<)

# Load test (README "Load test"): Locust headless against a running API (it starts nothing), then req/s, p50/p95/p99, errors per route.
LOAD_URL ?= http://127.0.0.1:3000
LOAD_USERS ?= 16
LOAD_SPAWN_RATE ?= 8
LOAD_SECONDS ?= 30
LOAD_CSV ?= artifacts/load/load
# Without an Authorization header in LOAD_HEADERS, make run's demo user signs in (scripts/local_cognito.py).
LOAD_USER ?= clinician
load: $(LOCUST_STAMP)
	$(LOCUST_VENV)/bin/python -m scripts.load.run --url '$(LOAD_URL)' --users $(LOAD_USERS) \
	  --spawn-rate $(LOAD_SPAWN_RATE) --seconds $(LOAD_SECONDS) --csv '$(LOAD_CSV)' \
	  --sign-in '$(PY) -m scripts.local_cognito token $(LOAD_USER)'

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

# The retraining job's image: builds training/Dockerfile and pushes it to the TrainingImageRepository of the
# stack samconfig.toml's config env ENV names (default: med-classifier), then prints TrainingImageTag=<tag>
# to deploy with. Needs Docker and AWS credentials (says which is missing). TAG and REGION override.
training-image: $(STAMP)
	$(PY) -m scripts.training_image --env $(or $(ENV),default) $(if $(TAG),--tag $(TAG)) $(if $(REGION),--region $(REGION))

validate: $(STAMP)
	$(VENV)/bin/sam validate --lint --region us-east-1
	$(VENV)/bin/cfn-lint template.yaml

# Deploy to AWS (README, "Deploy to AWS"): sam build, sam deploy --config-env ENV (samconfig.toml; staging
# unless ENV=prod), the four models published if the stack's bucket has none, then the smoke test as a
# throwaway user. DEPLOY_ARGS: --yes (no change-set prompt), --skip-build, --template-file F, --region R,
# --parameter KEY=VALUE; any other option goes to sam deploy as it is (the pipeline's --role-arn, --s3-bucket).
deploy: $(STAMP)
	$(PY) -m scripts.deploy --env $(or $(ENV),staging) $(DEPLOY_ARGS)

# Smoke test of a running API (scripts/smoke_test.py): by default make run's, as its demo clinician.
# A deployed stack: make smoke URL=<ApiUrl> SMOKE_USER=<email> SMOKE_PASSWORD=<password>. The password
# goes by the environment, and the recipe is not echoed, so it is printed nowhere.
URL ?= http://127.0.0.1:3000
SMOKE_USER ?= clinician@example.org
SMOKE_PASSWORD ?= Clinician-demo-2026
smoke: $(STAMP)
	@SMOKE_PASSWORD='$(SMOKE_PASSWORD)' $(PY) -m scripts.smoke_test --url '$(URL)' --username '$(SMOKE_USER)' $(SMOKE_ARGS)

.PHONY: deploy smoke

layer-size: build
	$(PY) scripts/layer_size.py

bench: $(STAMP)
	$(PY) -m scripts.bench
	$(PY) -m scripts.bench_images

clean:
	rm -rf .aws-sam build *.egg-info .mutation
