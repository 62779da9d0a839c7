# Two commands: `make run` and `make test`. Everything they need is installed here.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 5000
HOST ?= 127.0.0.1
export PORT

.PHONY: install run test test-python test-node test-browser lint bench clean

# `make run` needs the app's dependencies plus the sandboxes' (the `sandbox` extra); `make test`
# adds the test tools. sandboxes/ itself is not installed: it is imported from the repository.
$(BIN)/.installed-app: pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[sandbox]'
	touch $@

$(BIN)/.installed: $(BIN)/.installed-app
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[test,sandbox]'
	touch $@

install: $(BIN)/.installed

# Migrates, seeds the demo, starts the local HubSpot/Salesforce sandboxes when no
# credentials are set, and serves the app (see webapp/local.py).
run: $(BIN)/.installed-app
	HOST=$(HOST) $(BIN)/python -m webapp.local

test: test-browser test-python test-node

# The suite always runs on SQLite; with TEST_DATABASE_URL set it runs again on that database.
test-python: install
	env -u TEST_DATABASE_URL $(BIN)/python -m pytest --ignore=tests/browser
	@if [ -n "$$TEST_DATABASE_URL" ]; then \
	  echo "== again on $$TEST_DATABASE_URL"; $(BIN)/python -m pytest --ignore=tests/browser; fi

# The buyer page and the editor in headless Chromium, driven by Playwright (tests/browser).
# Chromium comes from the system packages, never downloaded at run time (no `playwright install`).
# Without it the browser tests are skipped, saying so, except under CI=true where they must run.
CHROMIUM := /usr/bin/chromium
test-browser: install
	@if [ ! -x $(CHROMIUM) ] && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "== installing chromium from the system packages"; \
	  apt-get install -y -qq chromium >/dev/null 2>&1 || \
	    { apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq chromium >/dev/null 2>&1; } || true; fi
	@if [ ! -x $(CHROMIUM) ]; then \
	  if [ "$$CI" = "true" ]; then echo "chromium is required in CI: apt-get install -y chromium" >&2; exit 1; fi; \
	  echo "SKIPPED: no $(CHROMIUM) (apt-get install -y chromium); the browser tests did not run"; exit 0; fi; \
	env -u TEST_DATABASE_URL $(BIN)/python -m pytest tests/browser && \
	if [ -n "$$TEST_DATABASE_URL" ]; then \
	  echo "== browser tests again on $$TEST_DATABASE_URL"; $(BIN)/python -m pytest tests/browser; fi

# The HubSpot card (vitest) and the Salesforce package (lwc-jest, eslint, prettier).
NODE_PROJECTS := hubspot_app salesforce_package
test-node:
	@if ! command -v npm >/dev/null; then \
	  if [ "$$CI" = "true" ]; then echo "npm is required in CI" >&2; exit 1; fi; \
	  echo "SKIPPED: npm not found, the card and LWC tests did not run"; exit 0; fi; \
	for dir in $(NODE_PROJECTS); do \
	  [ -f $$dir/package-lock.json ] || continue; \
	  if [ ! -f $$dir/node_modules/.ci-stamp ] || [ $$dir/package-lock.json -nt $$dir/node_modules/.ci-stamp ]; then \
	    (cd $$dir && npm ci --no-audit --no-fund --loglevel=error) && touch $$dir/node_modules/.ci-stamp || exit 1; fi; \
	  echo "== $$dir: npm test"; (cd $$dir && npm test) || exit 1; \
	done
	@if command -v npm >/dev/null; then \
	  echo "== salesforce_package: sf project convert source (Salesforce CLI on Node 22, from npm)"; \
	  cd salesforce_package && npm run --silent check:metadata; fi

lint: install
	$(BIN)/pip install --quiet ruff && $(BIN)/ruff check connector webapp sandboxes tests bench

bench: install
	@for script in bench/[!_]*.py; do echo "== $$script"; $(BIN)/python $$script || exit 1; done

clean:
	rm -rf $(VENV) instance */node_modules .pytest_cache
