# The two commands: `make run` (serve the embedded default) and `make test`.
# Both set up the virtualenv and install first; nothing else needs to be running.
# `make contract` gates the published API contract (needs Node.js and npm as well).

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
PIP    := $(BIN)/python -m pip --disable-pip-version-check
# Exact versions and hashes of everything installed. `make lock` brings both files in line
# with pyproject.toml, keeping every pin it can (the test lock keeps the runtime pins);
# `make lock LOCK_ARGS=--upgrade` moves every pin to the newest release allowed.
COMPILE := $(BIN)/pip-compile --quiet --generate-hashes --strip-extras --allow-unsafe \
	--no-emit-index-url --no-emit-find-links --no-emit-trusted-host
CONTRACT := tools/contract
NODE_STAMP := $(CONTRACT)/node_modules/.installed-stamp
HOST   ?= 127.0.0.1
PORT   ?= 8000

.PHONY: install run test test-fast lint typecheck contract openapi migrate lock bench bench-calls bench-backup bench-outbound bench-webforms clean

# Dependencies come from the hash-checked lock, the package itself without them.
$(STAMP): pyproject.toml requirements-test.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --require-hashes -r requirements-test.lock
	$(PIP) install --quiet --no-deps -e .
	touch $(STAMP)

install: $(STAMP)

run: install
	$(BIN)/crm-service serve --host $(HOST) --port $(PORT)

# Without PostgreSQL/Redis the suite runs on SQLite and lists what it skipped and why
# (pytest -ra). CI sets CRM_TEST_REQUIRE_SERVICES=1 so those skips become failures.
# One worker process per core (each builds its own databases); XDIST='-n 0' for one process.
XDIST ?= -n auto
test: install
	$(BIN)/python -m pytest $(XDIST) $(PYTEST_ARGS)

# The edit loop: SQLite only (no PostgreSQL-marked test), same parallel workers.
test-fast: install
	$(BIN)/python -m pytest $(XDIST) -m "not postgres" $(PYTEST_ARGS)

# Ruff: the lint rules in pyproject.toml and the format (100 columns), then mypy; CI runs
# it first.
lint: install
	$(BIN)/ruff check src tests bench tools
	$(BIN)/ruff format --check src tests bench tools
	$(MAKE) --no-print-directory typecheck

# mypy over the package as [tool.mypy] in pyproject.toml configures it: kit/, crypto/ and
# security/ as --strict, the rest with moderate checks.
typecheck: install
	$(BIN)/mypy

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

# The request-path benchmark against the bare stack (README, Benchmark): needs PostgreSQL at
# CRM_BENCH_POSTGRES_URL and wrk; about five minutes. Options go through BENCH_ARGS, e.g.
# make bench BENCH_ARGS='--only get,post --rounds 2'.
bench: install
	$(BIN)/python -m bench.run $(BENCH_ARGS)

# What each request of `make bench` costs, counted rather than timed (database round trips,
# SQL statements, Python function calls): repeatable on a busy machine. PostgreSQL as above.
bench-calls: install
	$(BIN)/python -m bench.calls $(BENCH_ARGS)

# Backup, verify and restore of 100,000 contacts: seconds and peak memory (README, Benchmark).
# PostgreSQL by default; BENCH_BACKUP_ARGS='--sqlite' or '--contacts 20000'.
bench-backup: install
	$(BIN)/python -m bench.backup $(BENCH_BACKUP_ARGS)
# Data that leaves the service: export contacts/s and peak RSS, webhook deliveries/s, on
# PostgreSQL at CRM_BENCH_POSTGRES_URL, e.g. make bench-outbound BENCH_ARGS='--contacts 1000000'.
bench-outbound: install
	$(BIN)/python -m bench.outbound $(BENCH_ARGS)

# Public web-form submissions/s under the throttle's limits, with and without double opt-in,
# on PostgreSQL at CRM_BENCH_POSTGRES_URL, e.g. make bench-webforms BENCH_ARGS='--submissions 500'.
bench-webforms: install
	$(BIN)/python -m bench.webforms $(BENCH_ARGS)

lock:
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet 'pip-tools>=7.4,<8'
	$(COMPILE) $(LOCK_ARGS) --output-file requirements.lock pyproject.toml
	$(COMPILE) $(LOCK_ARGS) --extra test --constraint requirements.lock \
		--output-file requirements-test.lock pyproject.toml

clean:
	rm -rf $(VENV) var .pytest_cache $(CONTRACT)/node_modules
