# Two commands on a fresh machine with Python 3.11+ and make: `make run` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
UV_BOOT := .uv-boot
UV := $(UV_BOOT)/bin/uv
VENV := .venv
PY := $(VENV)/bin/python
export UV_PYTHON_DOWNLOADS := never
export UV_PROJECT_ENVIRONMENT := $(VENV)

# Local defaults for the suite: the real PostgreSQL and Redis on this machine.
TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/tmt_ir
TEST_BROKER_URL ?= redis://127.0.0.1:6379/15
# pytest-xdist workers for make test: one per core. Much of the suite waits on real processes,
# sockets and browsers, so the workers overlap that waiting too. TEST_WORKERS=0 runs in one process.
TEST_WORKERS ?= auto
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
PANGO_PKGS := libpango-1.0-0 libpangoft2-1.0-0 libharfbuzz-subset0 fonts-dejavu-core
# pdftoppm: the report layout tests render the PDF's pages to images.
POPPLER_PKGS := poppler-utils

.PHONY: install run test test-e2e-deps bench lint fuzz mutate check clean

$(UV):
	$(PYTHON) -m venv $(UV_BOOT)
	$(UV_BOOT)/bin/pip install --quiet uv

# Idempotent: installs only what is missing.
install: $(UV)
	$(UV) sync --frozen --python $(PYTHON)
	@missing=""; \
	ldconfig -p | grep -q libpangoft2-1.0 || missing="$(PANGO_PKGS)"; \
	command -v pdftoppm >/dev/null || missing="$$missing $(POPPLER_PKGS)"; \
	if [ -n "$$missing" ]; then \
		echo "Installing from Debian packages:$$missing (Pango for WeasyPrint, pdftoppm for the PDF tests)"; \
		$(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing; \
	fi

# The browser tests drive Debian's Chromium; no browser is downloaded.
test-e2e-deps:
	@if [ ! -x /usr/bin/chromium ]; then \
		echo "Installing Debian's chromium for the browser tests"; \
		$(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq chromium; \
	fi

# Web, dispatcher, worker, beat and the agent simulator, on the local defaults (SQLite and a
# filesystem broker in var/), under supervisord (deploy/supervisord.conf: the Procfile's
# commands), which restarts any process that dies; Ctrl-C stops them all.
run: install
	$(PY) manage.py migrate --noinput
	$(PY) manage.py seed_demo --if-empty
	@# Pages go to the agent simulator's pager (it logs each one) unless a real provider is set.
	TMT_SMS_PROVIDER_URL=$${TMT_SMS_PROVIDER_URL:-http://127.0.0.1:$${TMT_AGENTS_CONTROL_PORT:-8009}/pager} \
	TMT_SMS_PROVIDER_WEBHOOK_SECRET=$${TMT_SMS_PROVIDER_WEBHOOK_SECRET:-local-pager-secret} \
	TMT_PAGER_REPLY_URL=$${TMT_PAGER_REPLY_URL:-http://127.0.0.1:$${TMT_WEB_PORT:-8000}} \
	TMT_VAR_DIR=$${TMT_VAR_DIR:-$(CURDIR)/var} \
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(VENV)/bin/supervisord -c deploy/supervisord.conf

test: install test-e2e-deps
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports
	DATABASE_URL=$${DATABASE_URL:-$(TEST_DATABASE_URL)} \
	CELERY_BROKER_URL=$${CELERY_BROKER_URL:-$(TEST_BROKER_URL)} \
	TMT_REQUIRE_SERVICES=1 \
	$(VENV)/bin/pytest -n $(TEST_WORKERS) $(PYTEST_ARGS)

# The API contract fuzz run at length (make test runs it with 5 examples per operation).
fuzz: install
	DATABASE_URL=$${DATABASE_URL:-$(TEST_DATABASE_URL)} \
	CELERY_BROKER_URL=$${CELERY_BROKER_URL:-$(TEST_BROKER_URL)} \
	TMT_REQUIRE_SERVICES=1 TMT_FUZZ_EXAMPLES=$${TMT_FUZZ_EXAMPLES:-100} \
	$(VENV)/bin/pytest tests/incidents/api/test_contract_fuzz.py \
		tests/incidents/api/test_alerts.py::test_generated_alert_payloads_never_fail_and_match_the_schema -p no:logging -q

bench: install
	@for script in bench/[!_]*.py; do \
		echo "== $$script"; \
		DATABASE_URL=$${DATABASE_URL:-$(TEST_DATABASE_URL)} CELERY_BROKER_URL=$${CELERY_BROKER_URL:-$(TEST_BROKER_URL)} \
		$(PY) $$script || exit 1; \
	done

# Mutation testing of the rules that page people and sign reports (mutation/run.py; hours for
# every module). One module: make mutate MUTANTS=incidents.escalation.services
mutate: install
	DATABASE_URL=$${DATABASE_URL:-$(TEST_DATABASE_URL)} CELERY_BROKER_URL=$${CELERY_BROKER_URL:-$(TEST_BROKER_URL)} \
	$(PY) mutation/run.py $(MUTANTS)

# ruff (rules and formatting at 120 columns), and the import contract: the apps depend one way
# (pyproject.toml, [tool.importlinter]). make test runs the same checks first.
lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports

check: install
	$(PY) manage.py check
	DJANGO_PRODUCTION=1 DJANGO_SECRET_KEY=$$(head -c 48 /dev/urandom | base64) DJANGO_ALLOWED_HOSTS=tmt.example $(PY) manage.py check --deploy --fail-level WARNING

clean:
	rm -rf $(VENV) $(UV_BOOT) var
