# make run   - every function end to end on loopback stand-ins (no AWS, no cloud, no Docker)
# make webhook - serve the webhook endpoint on 127.0.0.1:8080 (PORT=, ARGS=--demo, ARGS=--logs)
# make samples - re-sign events/webhook-*.json after editing a payload or a sample secret
# make test  - ruff, mypy strict, the SAM template check and pytest (what .ci/run runs)
# make bench - cold and warm CPU, wall time and memory of the packaged artifact on 3.13, and
#              1,000 plans fanned out through the plan queue
# make package - sam build the deployable artifact (python3.13 arm64) and print its sizes
# make mutation - mutmut over the core modules: killed / survived per module (slow; not in CI)
# make audit - the layer's pins, their latest releases and known vulnerabilities (needs the index)
# make lock  - re-pin requirements-dev.txt after editing requirements-dev.in

PYTHON ?= python3
PORT ?= 8080
VENV := .venv
PY := $(VENV)/bin/python
# SAM CLI's own environment (it pins boto3 and pydantic exactly: never in the test environment).
SAM_VENV := .venv-sam
RUNTIME_VENV := .venv-runtime
# The Lambda runtime's Python, as the README's Deploy section says: python3.13 on PATH, or the
# newest 3.13 that pyenv has.
RUNTIME_PYTHON ?= $(shell python3.13 -c 'import sys; print(sys.executable)' 2>/dev/null || \
	PYENV_VERSION=$$(pyenv versions --bare 2>/dev/null | grep -E '^3\.13' | tail -n 1) \
	python3.13 -c 'import sys; print(sys.executable)' 2>/dev/null)
export RUNTIME_PYTHON
# The local run's own small environment: no linters, type checkers or template tools.
RUN_VENV := .venv-run
RUN_PY := $(RUN_VENV)/bin/python
export PYTHONPATH := layers/csbs_trigger:functions/scheduled_backup:functions/webhook:functions/completion_tracker:functions/plan_worker:functions/ticket_update:functions/expiry:functions/digest:tests

.DEFAULT_GOAL := help

# These machines set PYTHONDONTWRITEBYTECODE, and then every run compiled each module it imports
# anew: each of pytest's four workers, mypy's and cfn-lint's runs. Here a module's first import
# writes its bytecode, and only the modules some run imports are compiled (compiling all of .venv
# at install took 12 s of the checks' wall time, most of it moto's services no test loads).
unexport PYTHONDONTWRITEBYTECODE

.PHONY: help dev run webhook samples package artifact test lint typecheck template bytecode pytest bench audit lock clean mutation

help:
	@sed -n 's/^# \(make .*\)/\1/p' Makefile

# uv installs the pinned sets in seconds where pip takes most of a minute. It is installed once,
# beside the environments, and makes each of them (in 0.1 s, not 4).
UV_VERSION := 0.13.9
UV_DIR := .uv
UV := $(UV_DIR)/bin/uv
define make_venv
	rm -rf $(1)
	$(UV) venv --quiet --python $(or $(2),$(PYTHON)) $(1)
endef

$(UV):
	$(PYTHON) -m pip install --quiet --disable-pip-version-check --target $(UV_DIR) \
		uv==$(UV_VERSION)

$(VENV)/.installed: requirements-dev.txt layers/csbs_trigger/requirements.txt | $(UV)
	$(call make_venv,$(VENV))
	$(UV) pip install --quiet --python $(PY) -r requirements-dev.txt
	touch $@

$(RUN_VENV)/.installed: requirements-run.in requirements-dev.txt layers/csbs_trigger/requirements.txt | $(UV)
	$(call make_venv,$(RUN_VENV))
	$(UV) pip install --quiet --compile-bytecode --python $(RUN_PY) \
		-r requirements-run.in \
		-c requirements-dev.txt
	touch $@

$(SAM_VENV)/.installed: requirements-sam.txt | $(UV)
	$(call make_venv,$(SAM_VENV))
	$(UV) pip install --quiet --python $(SAM_VENV)/bin/python -r requirements-sam.txt
	touch $@

dev: $(VENV)/.installed

run: $(RUN_VENV)/.installed
	$(RUN_PY) -m support.local_run $(ARGS) $(EVENTS)

webhook: $(RUN_VENV)/.installed
	$(RUN_PY) -m support.local_webhook --port $(PORT) $(ARGS)

samples: $(RUN_VENV)/.installed
	$(RUN_PY) -m support.webhook_samples

# The checks run beside the artifact's build (each one's output kept together), then pytest,
# which tests that artifact too.
test: | $(UV)
	@began=$$(date +%s); \
	$(MAKE) --no-print-directory --jobs=4 --output-sync=target lint typecheck template artifact \
		bytecode && $(MAKE) --no-print-directory pytest; status=$$?; \
	echo "make test: $$(( $$(date +%s) - began )) s"; exit $$status

lint: dev
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: dev
	$(VENV)/bin/mypy

template: dev
	$(PY) -m support.check_template template.yaml

# pytest's four workers start at once: one collection beside the other checks compiles the test
# modules (their assertions rewritten) and what they import once for all four.
bytecode: dev
	$(PY) -m pytest -q --collect-only -p no:randomly > /dev/null

# Four workers on two cores: a test spends part of its time waiting on sockets (moto, the
# stand-in), and four keep both cores busy (measured here: 114 s with two workers, 108 s with
# four; the suite is CPU-bound, so the difference is small).
pytest: dev
	$(PY) -m pytest -q -n 4

bench: artifact $(RUN_VENV)/.installed
	$(RUN_PY) -m support.bench $(ARGS)
	$(RUN_PY) -m support.bench_fanout

package: $(SAM_VENV)/.installed $(RUN_VENV)/.installed
	@test -n "$(RUNTIME_PYTHON)" || { echo "python3.13 not found: see README, Deploy"; exit 1; }
	SAM_CLI_TELEMETRY=0 $(SAM_VENV)/bin/sam build --template template.yaml
	$(RUN_PY) -m support.artifacts

# The Lambda runtime as the packaged smoke test needs it: python3.13 with boto3 and nothing else.
$(RUNTIME_VENV)/.installed: requirements-dev.txt | $(UV)
	$(call make_venv,$(RUNTIME_VENV),$(RUNTIME_PYTHON))
	$(UV) pip install --quiet --compile-bytecode --python $(RUNTIME_VENV)/bin/python \
		boto3 -c requirements-dev.txt
	touch $@

# What make test checks of the artifact; without python3.13 the packaged test says why it fails.
artifact:
	@if [ -n "$(RUNTIME_PYTHON)" ]; then $(MAKE) --no-print-directory package \
		$(RUNTIME_VENV)/.installed; else echo "python3.13 not found: no packaged test"; fi

mutation: dev
	$(PY) -m support.mutation $(ARGS)

audit: dev
	$(UV) pip install --quiet --python $(PY) pip-audit==2.10.1
	$(PY) -m support.audit

lock: dev
	$(UV) pip install --quiet --python $(PY) -r requirements-dev.in
	$(UV) pip freeze --python $(PY) --exclude-editable | grep -v -E '^(uv|pip|setuptools)==' \
		| sort > requirements-dev.txt

clean:
	rm -rf $(UV_DIR) $(VENV) $(RUN_VENV) $(SAM_VENV) $(RUNTIME_VENV) .mypy_cache .pytest_cache .ruff_cache .aws-sam
