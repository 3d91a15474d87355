PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install test test-fast lint bench demo package dist clean

# Python writes the bytecode of the checkout's modules (__pycache__, ignored by git) where the
# environment says not to: the tests start the CLI and the local stack hundreds of times, and
# each would compile every module again.
unexport PYTHONDONTWRITEBYTECODE

# The tests run in parallel (pytest-xdist), each test module on one worker so that a module's
# servers start once, handed out longest first (tests/conftest.py orders them): TEST_WORKERS=1
# runs them in this process, one after another.
TEST_WORKERS ?= auto
PYTEST_PARALLEL := $(if $(filter 1,$(TEST_WORKERS)),-p no:xdist,-n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder)

# The service and its tooling (editable), and the client from client/ (editable, all extras).
$(STAMP): pyproject.toml client/pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q 'pip==26.2'
	$(BIN)/pip install -q -e './client[psycopg,sqlalchemy,pymysql]' -e '.[local,test]'
	touch $(STAMP)

install: $(STAMP)

# Static checks first (ruff: lint and import order; mypy: strict on everything, tests included), then the tests.
test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/python -m pytest -q $(PYTEST_PARALLEL) --durations=15

# The quick loop: unit and functional tests that start no server (PostgreSQL, MariaDB, a moto
# server, the local stack: those carry the e2e marker) and build nothing (the client wheel, the
# deployment package: wheel, build). make test stays the one full command.
test-fast: $(STAMP)
	$(BIN)/python -m pytest -q $(PYTEST_PARALLEL) -m "not e2e and not wheel and not build" --durations=15

bench: $(STAMP)
	$(BIN)/python -m bench

demo: $(STAMP)
	$(BIN)/python -m devtools.local.demo

package: $(STAMP)
	$(BIN)/python -m devtools.deploy.package

# The client distribution (import package rdsvend, botocore only) as a wheel in dist/.
dist: $(STAMP)
	rm -f dist/rdsvend-*.whl
	$(BIN)/pip wheel -q --no-deps -w dist ./client

# build/: everything make package generates; Terraform state (and anything else kept there) stays.
clean:
	rm -rf $(VENV) build/.stage build/.work build/*/sam build/*/member-roles dist .rdsvend client/build client/*.egg-info
	rm -f build/*/terraform/chalice.tf.json build/*/terraform/rdsvend.tf.json build/*/terraform/deployment.zip
