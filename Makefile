# Safeguard Relay — the two commands: `make run` and `make test`.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
RUN_STAMP := $(VENV)/.installed-run
TEST_STAMP := $(VENV)/.installed-test
PYTEST_ARGS ?=
BENCH_ARGS ?=
# The hashed lock files (scripts/lock.sh writes them from pyproject.toml: `make lock`).
LOCK_BUILD := requirements/build.txt
LOCK_RUN := requirements/run.txt
LOCK_TEST := requirements/test.txt

.PHONY: run test install install-test assets services bench clean fresh-check test-cluster test-faults lock

# What running needs (the services and the development identity provider); the test extra
# (pytest, Playwright, schemathesis, kubernetes-validate, ...) only for the test targets.
install: $(RUN_STAMP) assets
install-test: $(TEST_STAMP) assets

# The front-end assets (package.json, locked by package-lock.json) in node_modules/;
# instant when they are up to date with the lock file.
assets:
	@scripts/ensure-node.sh

# Exactly the locked versions, every file checked against its sha256 (--require-hashes), then
# the project itself with no dependencies, built by the locked setuptools. A changed lock file
# or pyproject.toml reinstalls.
$(RUN_STAMP): pyproject.toml $(LOCK_RUN) $(LOCK_BUILD)
	@scripts/bootstrap-venv.sh $(VENV)
	$(PY) -m pip install -q --require-hashes -r $(LOCK_BUILD)
	$(PY) -m pip install -q --require-hashes -r $(LOCK_RUN)
	$(PY) -m pip install -q --no-deps --no-build-isolation -e .
	@touch $(RUN_STAMP)

$(TEST_STAMP): pyproject.toml $(LOCK_TEST) $(LOCK_BUILD)
	@scripts/bootstrap-venv.sh $(VENV)
	$(PY) -m pip install -q --require-hashes -r $(LOCK_BUILD)
	$(PY) -m pip install -q --require-hashes -r $(LOCK_TEST)
	$(PY) -m pip install -q --no-deps --no-build-isolation -e .
	@touch $(TEST_STAMP) $(RUN_STAMP)

# Re-resolve requirements/*.txt after editing pyproject.toml's dependencies (keeps every pin
# that still fits). Newest of everything: make lock LOCK_ARGS=--upgrade; one package:
# make lock LOCK_ARGS="--upgrade-package aiohttp". Commit the lock files with pyproject.toml.
lock:
	@scripts/lock.sh

services:
	@scripts/ensure-services.sh rabbitmq postgres

run: install
	@scripts/ensure-services.sh rabbitmq
	SAFEGUARD_LOG_FORMAT=$${SAFEGUARD_LOG_FORMAT:-console} $(VENV)/bin/safeguard up --init

# pytest exits 5 when it collected no tests: that is a failure here, not a pass.
test: install-test services
	@scripts/ensure-promtool.sh $(VENV)
	@scripts/ensure-chromium.sh
	@set +e; $(PY) -m pytest $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test: pytest collected no tests" >&2; exit 1; fi; exit $$rc

# The six benchmarks of tests/perf/ (ours vs the bare broker and the durable floor, interleaved,
# median of 3 rounds); writes docs/performance.md. About 13 minutes on 2 cores; not part of `make test`.
# Sizes and rounds: make bench BENCH_ARGS="--rounds 5 --pending 1000000" (see python -m tests.perf -h).
bench: install-test services
	$(PY) -m tests.perf $(BENCH_ARGS)

# Fault injection under load (tests/faults/, marked `faults`, left out of `make test`): the
# three services as processes, killed -9, cut off from the broker and the mail server, slowed,
# while referrals flow; a checker classifies every referral, timer, email and alert and the
# tables go to docs/reliability.md. ~5 minutes. Bigger: make test-faults FAULTS_REFERRALS=2000;
# FAULTS_RESTART_SERVERS=1 also restarts RabbitMQ and PostgreSQL (shared: not on a busy machine).
test-faults: install-test services
	@set +e; $(PY) -m pytest -m faults -s tests/faults $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test-faults: pytest collected no tests" >&2; exit 1; fi; exit $$rc

# Replicas on one machine: a 3-node RabbitMQ cluster of its own (Debian's rabbitmq-server,
# nodes sgc<pid>x1..3@localhost in a temp dir), 2 processes of each service, 1,000 referrals,
# one node killed mid-run; prints its figures. Minutes; not part of `make test` (tests/cluster
# is deselected unless `-m cluster`). Size: make test-cluster SAFEGUARD_CLUSTER_REFERRALS=300
test-cluster: install-test services
	$(PY) -m pytest -m cluster -s -p no:cacheprovider tests/cluster $(PYTEST_ARGS)

# A clean copy of the repo in a temp dir: new venv, unit tests, wheel, make run + /healthz.
# Takes minutes; not part of `make test`.
fresh-check:
	@scripts/fresh-machine-check.sh

clean:
	rm -rf $(VENV) var .pytest_cache node_modules
