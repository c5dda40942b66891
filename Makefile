# The two commands: `make run` (serve the embedded default) and `make test`.
# Both set up the virtualenv and install first; nothing else needs to be running.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
HOST   ?= 127.0.0.1
PORT   ?= 8000

.PHONY: install run test openapi migrate bench clean

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

openapi: install
	$(BIN)/crm-service openapi --out openapi/openapi.json

migrate: install
	$(BIN)/crm-service migrate

# The request-path benchmark against the bare stack (README, Benchmark): needs PostgreSQL at
# CRM_BENCH_POSTGRES_URL and wrk; about five minutes. Options go through BENCH_ARGS, e.g.
# make bench BENCH_ARGS='--only get,post --rounds 2'.
bench: install
	$(BIN)/python -m bench.run $(BENCH_ARGS)

clean:
	rm -rf $(VENV) var .pytest_cache
