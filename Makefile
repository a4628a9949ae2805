# aisys: `make run` starts the whole system on this machine; `make test` runs every check.
# Python: every version all the dependencies ship wheels for (README, "Python versions").
# Unless PYTHON is given, the first of these that runs and is in the range is used.
PYTHON_VERSIONS   := 3.11 3.12 3.13 3.14
PYTHON_CANDIDATES := $(addprefix python,$(PYTHON_VERSIONS)) python3
PYTHON_IN_RANGE   := import sys; sys.exit(not (3, 11) <= sys.version_info[:2] < (3, 15))
space             := $() $()
PYTHON_NAMES      := $(subst $(space),/,$(PYTHON_VERSIONS))
ifeq ($(origin PYTHON),undefined)
PYTHON := $(shell for p in $(PYTHON_CANDIDATES); do \
	$$p -c '$(PYTHON_IN_RANGE)' >/dev/null 2>&1 && command -v $$p && break; done)
endif
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: run test venv dev-venv system-deps lint typecheck pytest bench bench-quick down gpu-check which-python

run: venv
	$(BIN)/aisys up

down:
	$(BIN)/aisys down

test: dev-venv system-deps lint typecheck pytest

# Stops before creating the venv when no suitable interpreter was found or PYTHON is outside it.
CHECK_PYTHON = $(if $(PYTHON),$(PYTHON) -c '$(PYTHON_IN_RANGE)' 2>/dev/null || { echo "make: \
	PYTHON=$(PYTHON) is not Python $(PYTHON_NAMES); aisys supports exactly \
	those" >&2; exit 1; },echo "make: no Python $(PYTHON_NAMES) found (tried \
	$(PYTHON_CANDIDATES)); install one, or run make PYTHON=/path/to/python3.X" >&2; exit 1)

# The interpreter `make venv` uses (cluster.yaml's setup_commands create the hosts' venvs with it).
which-python:
	@$(CHECK_PYTHON)
	@command -v $(PYTHON)

venv: $(BIN)/.installed
$(BIN)/.installed: pyproject.toml
	@$(CHECK_PYTHON)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e .
	touch $@

dev-venv: $(BIN)/.installed-dev
$(BIN)/.installed-dev: pyproject.toml
	@$(CHECK_PYTHON)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(BIN)/.installed $@

# The two-host e2e tests need iproute2 (`ip netns`), and the `ray up` one an ssh server on each
# namespace host and rsync (openssh-server, which brings the ssh client); the `aisys
# import-legacy` tests start a real redis-server (the legacy ServiceRegistry's backend); the
# Alertmanager tests start a real prometheus-alertmanager and the scrape test a real prometheus
# (without its recommended exporters; a policy-rc.d keeps apt from starting its service, which
# is left disabled: the test runs its own on a random port); the `aisys service` tests check the
# systemd units with systemd-analyze (package systemd); the status page test drives a headless
# chromium. Install each when missing (root, Debian).
system-deps:
	@command -v ip >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y -qq iproute2)
	@test -x /usr/sbin/sshd || (apt-get update -qq && apt-get install -y -qq openssh-server)
	@command -v rsync >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y -qq rsync)
	@command -v redis-server >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y -qq redis-server)
	@command -v prometheus-alertmanager >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y -qq prometheus-alertmanager)
	@command -v prometheus >/dev/null 2>&1 || { rcd=/usr/sbin/policy-rc.d; made=; \
	  test -e $$rcd || { printf '#!/bin/sh\nexit 101\n' >$$rcd && chmod 755 $$rcd && made=1; }; \
	  apt-get update -qq && apt-get install -y -qq --no-install-recommends prometheus; rc=$$?; \
	  test -z "$$made" || rm -f $$rcd; systemctl disable prometheus >/dev/null 2>&1; exit $$rc; }
	@command -v systemd-analyze >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y -qq systemd)
	@command -v chromium >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y -qq chromium)

lint:
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

typecheck:
	$(BIN)/mypy

pytest:
	$(BIN)/pytest

BENCHES := registry_lookup auth_overhead coordinator_throughput errorbus_throughput resource_leases observability legacy_gateway gpu_workers cold_start

# Each benchmark measures aisys against its floor in the same run and exits 1 when a row misses
# its goal; every benchmark runs, then make fails naming those that missed. bench-quick: the same
# rows with fewer iterations, all in one shared system (bench/quick.py; a few minutes).
bench: dev-venv
	@failed=""; for b in $(BENCHES); do echo "######## bench.$$b"; 		$(BIN)/python -m bench.$$b $(BENCH_ARGS) || failed="$$failed $$b"; done; 	if [ -n "$$failed" ]; then echo "make bench: goals missed or errors in:$$failed" >&2; exit 1; fi

bench-quick: dev-venv
	$(BIN)/python -m bench.quick

# On a machine with an NVIDIA driver: what NVML reports, a VRAM lease granted by the scheduler's
# ledger, a Ray task under it with num_gpus, its CUDA_VISIBLE_DEVICES and the VRAM NVML measured
# for it. Without a driver it says so and exits 0.
gpu-check: venv
	$(BIN)/python -m cluster.ops.gpu_check
