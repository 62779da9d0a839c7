# Two commands: `make run` and `make test`. Everything they need is installed here.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 5000
HOST ?= 127.0.0.1
export PORT

.PHONY: install run test test-python test-node lint bench clean

$(BIN)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[test]'
	touch $@

install: $(BIN)/.installed

run: install
	$(BIN)/mutualplan db upgrade
	$(BIN)/mutualplan demo
	$(BIN)/mutualplan run --host $(HOST) --port $(PORT)

test: test-python test-node

# The suite always runs on SQLite; with TEST_DATABASE_URL set it runs again on that database.
test-python: install
	env -u TEST_DATABASE_URL $(BIN)/python -m pytest
	@if [ -n "$$TEST_DATABASE_URL" ]; then \
	  echo "== again on $$TEST_DATABASE_URL"; $(BIN)/python -m pytest; fi

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
	@echo "== salesforce_package: sf project convert source (Salesforce CLI on Node 22, from npm)"
	cd salesforce_package && npm run --silent check:metadata

lint: install
	$(BIN)/pip install --quiet ruff && $(BIN)/ruff check connector webapp tests bench

bench: install
	@for script in bench/*.py; do echo "== $$script"; $(BIN)/python $$script || exit 1; done

clean:
	rm -rf $(VENV) instance */node_modules .pytest_cache
