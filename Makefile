# aisys: `make run` starts the whole system on this machine; `make test` runs every check.
PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: run test venv dev-venv system-deps lint typecheck pytest bench down

run: venv
	$(BIN)/aisys up

down:
	$(BIN)/aisys down

test: dev-venv system-deps lint typecheck pytest

venv: $(BIN)/.installed
$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e .
	touch $@

dev-venv: $(BIN)/.installed-dev
$(BIN)/.installed-dev: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(BIN)/.installed $@

# The two-host e2e tests need iproute2 (`ip netns`); the `aisys import-legacy` tests start a
# real redis-server (the legacy ServiceRegistry's backend); the Alertmanager tests start a real
# prometheus-alertmanager. Install each when missing (root, Debian).
system-deps:
	@command -v ip >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y -qq iproute2)
	@command -v redis-server >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y -qq redis-server)
	@command -v prometheus-alertmanager >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y -qq prometheus-alertmanager)

lint:
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck:
	$(BIN)/mypy

pytest:
	$(BIN)/pytest

BENCHES := registry_lookup auth_overhead coordinator_throughput errorbus_throughput resource_leases observability legacy_gateway

bench: dev-venv
	@for b in $(BENCHES); do echo "######## bench.$$b"; $(BIN)/python -m bench.$$b || exit 1; done
