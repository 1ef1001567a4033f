# Safeguard Relay — the two commands: `make run` and `make test`.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
PYTEST_ARGS ?=

.PHONY: run test install services bench clean fresh-check

install: $(STAMP)

$(STAMP): pyproject.toml
	@scripts/bootstrap-venv.sh $(VENV)
	$(PY) -m pip install -q -e '.[test]'
	@touch $(STAMP)

services:
	@scripts/ensure-services.sh rabbitmq postgres

run: install
	@scripts/ensure-services.sh rabbitmq
	$(VENV)/bin/safeguard up --init

# pytest exits 5 when it collected no tests: that is a failure here, not a pass.
test: install services
	@scripts/ensure-promtool.sh $(VENV)
	@scripts/ensure-chromium.sh
	@set +e; $(PY) -m pytest $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test: pytest collected no tests" >&2; exit 1; fi; exit $$rc

# A clean copy of the repo in a temp dir: new venv, unit tests, wheel, make run + /healthz.
# Takes minutes; not part of `make test`.
fresh-check:
	@scripts/fresh-machine-check.sh

clean:
	rm -rf $(VENV) var .pytest_cache
