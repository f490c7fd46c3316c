# parcelhook — the README's commands. Each does its own set-up from a clean clone.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export PATH := $(CURDIR)/$(BIN):$(PATH)

.PHONY: run test demo bench proof lint typecheck clean venv

venv: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	@scripts/system-deps.sh python
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt -e ".[test]"
	@touch $(STAMP)

run: venv
	@scripts/system-deps.sh redis
	$(BIN)/python -m admin.devserver run

demo: venv
	@scripts/system-deps.sh redis
	$(BIN)/python -m admin.devserver demo

test: venv
	@scripts/system-deps.sh redis postgres rabbitmq chromium ss
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/python -m pytest -p no:cacheprovider $(PYTEST_ARGS)

# The fault suite at full size (PARCELHOOK_FAULT_ORDERS orders per scenario, ~6 webhooks each: ~1,500);
# prints the README's "What it survives" table. `make test` runs the same scenarios, smaller.
proof: venv
	@scripts/system-deps.sh redis postgres
	rm -f tests/artifacts/fault-results.jsonl
	status=0; PARCELHOOK_FAULT_ORDERS=$${PARCELHOOK_FAULT_ORDERS:-250} $(BIN)/python -m pytest -p no:cacheprovider \
		-m fault tests/fault || status=$$?; $(BIN)/python -m tests.support.fault_ledger; exit $$status

bench: venv
	@scripts/system-deps.sh redis wrk
	$(BIN)/python -m bench

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: venv
	$(BIN)/mypy

clean:
	rm -rf $(VENV) var tests/artifacts bench/results
