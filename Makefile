# The two commands: `make run` (serve the embedded default) and `make test`.
# Both set up the virtualenv and install first; nothing else needs to be running.
# `make contract` gates the published API contract (needs Node.js and npm as well).

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
CONTRACT := tools/contract
NODE_STAMP := $(CONTRACT)/node_modules/.installed-stamp
HOST   ?= 127.0.0.1
PORT   ?= 8000

.PHONY: install run test contract openapi migrate clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

run: install
	$(BIN)/crm-service serve --host $(HOST) --port $(PORT)

# Without PostgreSQL/Redis the suite runs on SQLite and lists what it skipped and why
# (pytest -ra). CI sets CRM_TEST_REQUIRE_SERVICES=1 so those skips become failures.
test: install
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# Spectral (OpenAPI and OWASP rules) lints openapi/openapi.json: any error fails. Then
# Schemathesis fuzzes a throw-away embedded instance from it: any failure fails.
contract: install $(NODE_STAMP)
	$(CONTRACT)/node_modules/.bin/spectral lint --fail-severity=error \
		--ruleset $(CONTRACT)/.spectral.yaml openapi/openapi.json
	$(BIN)/python $(CONTRACT)/fuzz.py

# The lint tools as package-lock.json pins them; install scripts are not run.
$(NODE_STAMP): $(CONTRACT)/package-lock.json
	@command -v node >/dev/null || { echo "contract: Node.js is missing; install the nodejs package (Debian: apt-get install nodejs)" >&2; exit 1; }
	@command -v npm >/dev/null || { echo "contract: npm is missing; install the npm package (Debian: apt-get install npm)" >&2; exit 1; }
	cd $(CONTRACT) && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error
	touch $@

openapi: install
	$(BIN)/crm-service openapi --out openapi/openapi.json

migrate: install
	$(BIN)/crm-service migrate

clean:
	rm -rf $(VENV) var .pytest_cache $(CONTRACT)/node_modules
