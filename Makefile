# medic — the two commands a newcomer needs are `make run` and `make test`.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
ARGS ?=
STACK_BIN := .stack/root/usr/bin

.PHONY: run test lint typecheck shipped unit stack demo example bench clean venv venv-test venv-bench

venv:
	@scripts/bootstrap-venv.sh

venv-test:
	@scripts/bootstrap-venv.sh test,torch

## Start medic on its built-in default config (http://127.0.0.1:9847/metrics).
run: venv
	$(VENV)/bin/medic run $(ARGS)

## Everything CI runs: lint, type checks, the whole test suite; then a check that the host's
## services, policy-rc.d and the checkout's git status are as they were before it.
test:
	@before=$$(mktemp); trap 'rm -f "$$before"' EXIT; scripts/host-state.sh >"$$before"; \
	$(MAKE) --no-print-directory venv-test lint typecheck shipped unit \
	&& scripts/host-state.sh "$$before"

lint: venv-test
	$(VENV)/bin/ruff check exporter tests bench grafana scripts examples
	$(VENV)/bin/ruff format --check exporter tests bench grafana scripts examples

typecheck: venv-test
	$(VENV)/bin/mypy

unit: venv-test stack
	$(VENV)/bin/pytest -q

## The shipped rules, their unit tests, and the example configs, checked by the real tools.
shipped: venv stack
	$(STACK_BIN)/promtool check rules alerts/medic.rules.yml
	$(STACK_BIN)/promtool test rules alerts/tests/medic.rules.test.yml
	$(STACK_BIN)/amtool check-config alerts/alertmanager.yml
	MEDIC_DATA_DIR=$$(mktemp -d) $(VENV)/bin/medic check-config --schema-only deploy/medic.yml
	MEDIC_DATA_DIR=$$(mktemp -d) $(VENV)/bin/medic check-config --schema-only deploy/fleet.yml

## Prometheus, Alertmanager and medic on this machine; watch an alert get remediated.
demo: venv-test stack
	$(PY) scripts/demo.py $(ARGS)

## The example torch model service embedding medic (http://127.0.0.1:8000).
example: venv-test
	$(PY) -m examples.inference_service $(ARGS)

## Debian's Prometheus, Alertmanager and libfuse3, unpacked into .stack/ (not installed),
## and a real model server (PyTriton's Triton) with supervisord in .stack/pytriton.
stack:
	@scripts/fetch-stack.sh
	@scripts/fetch-model-server.sh

## Benchmarks; figures go to BENCHMARKS.md by hand, with the command that made them. Each
## prints its same-run anchors (bench/anchors.py: node_exporter and nginx from Debian,
## unpacked into .stack/bench by scripts/fetch-bench-stack.sh, not installed).
venv-bench:
	@scripts/bootstrap-venv.sh test,torch,bench

bench: venv-bench stack
	@scripts/ensure-wrk.sh
	@scripts/fetch-bench-stack.sh
	$(PY) -m bench.flat
	$(PY) -m bench.scrape
	$(PY) -m bench.gpu
	$(PY) -m bench.breaker
	$(PY) -m bench.hostile
	$(PY) -m bench.probes
	$(PY) -m bench.targets
	$(PY) -m bench.restarts
	$(PY) -m bench.fleet
	$(PY) -m bench.recovery
	$(PY) -m bench.recovery --types 6
	$(PY) -m bench.webhook
	$(PY) -m bench.pull

clean:
	rm -rf $(VENV) .stack .mypy_cache .ruff_cache .pytest_cache .hypothesis *.egg-info
