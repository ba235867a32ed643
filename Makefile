# make run   - both functions end to end on loopback stand-ins (no AWS, no cloud, no Docker)
# make webhook - serve the webhook endpoint on 127.0.0.1:8080 (PORT=, ARGS=--demo, ARGS=--logs)
# make samples - re-sign events/webhook-*.json after editing a payload or a sample secret
# make test  - ruff, mypy strict, the SAM template check and pytest (what .ci/run runs)
# make bench - cold-start and memory figures
# make audit - the layer's pins, their latest releases and known vulnerabilities (needs the index)
# make lock  - re-pin requirements-dev.txt after editing requirements-dev.in

PYTHON ?= python3
PORT ?= 8080
VENV := .venv
PY := $(VENV)/bin/python
# The local run's own small environment: no linters, type checkers or template tools.
RUN_VENV := .venv-run
RUN_PY := $(RUN_VENV)/bin/python
export PYTHONPATH := layers/csbs_trigger:functions/scheduled_backup:functions/webhook:tests

.DEFAULT_GOAL := help

.PHONY: help dev run webhook samples test lint typecheck template pytest bench audit lock clean

help:
	@sed -n 's/^# \(make .*\)/\1/p' Makefile

# uv installs the pinned sets in seconds where pip takes most of a minute.
UV_VERSION := 0.13.9
define make_venv
	$(PYTHON) -m venv $(1)
	$(1)/bin/python -m pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)
endef

$(VENV)/.installed: requirements-dev.txt layers/csbs_trigger/requirements.txt
	$(call make_venv,$(VENV))
	$(VENV)/bin/uv pip install --quiet --python $(PY) -r requirements-dev.txt
	touch $@

$(RUN_VENV)/.installed: requirements-run.in requirements-dev.txt layers/csbs_trigger/requirements.txt
	$(call make_venv,$(RUN_VENV))
	$(RUN_VENV)/bin/uv pip install --quiet --python $(RUN_PY) -r requirements-run.in \
		-c requirements-dev.txt
	touch $@

dev: $(VENV)/.installed

run: $(RUN_VENV)/.installed
	$(RUN_PY) -m support.local_run $(ARGS) $(EVENTS)
	$(RUN_PY) -m support.local_webhook --demo --port 0 $(filter --logs,$(ARGS))

webhook: $(RUN_VENV)/.installed
	$(RUN_PY) -m support.local_webhook --port $(PORT) $(ARGS)

samples: $(RUN_VENV)/.installed
	$(RUN_PY) -m support.webhook_samples

test: lint typecheck template pytest

lint: dev
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: dev
	$(VENV)/bin/mypy

template: dev
	$(PY) -m support.check_template template.yaml

pytest: dev
	$(PY) -m pytest -q -n auto

bench: dev
	$(PY) -m support.bench

audit: dev
	$(PY) -m pip install --quiet --disable-pip-version-check pip-audit==2.10.1
	$(PY) -m support.audit

lock: dev
	$(VENV)/bin/uv pip install --quiet --python $(PY) -r requirements-dev.in
	$(VENV)/bin/uv pip freeze --python $(PY) --exclude-editable | grep -v '^uv==' \
		| sort > requirements-dev.txt

clean:
	rm -rf $(VENV) $(RUN_VENV) .mypy_cache .pytest_cache .ruff_cache .aws-sam
