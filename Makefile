# Two commands for a fresh clone: `make demo` and `make test`. Each installs what it needs.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PINPIPE := $(VENV)/bin/pinpipe
PY_STAMP := $(VENV)/.installed
NODE_STAMP := deploy/local/node_modules/.installed
DEMO_POSTS ?= 5000

.PHONY: install demo test test-unit bench clean

$(PY_STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $@

$(NODE_STAMP): deploy/local/package.json
	npm install --prefix deploy/local --no-audit --no-fund --loglevel=error
	touch $@

install: $(PY_STAMP) $(NODE_STAMP)

# The whole pipeline on the embedded services, from an empty lake: emulator -> Kafka + Kinesis -> Spark -> Delta.
demo: install
	rm -rf demo-lake
	$(PINPIPE) local up
	set -e; trap '$(PINPIPE) local down' EXIT; \
	export PINPIPE_LAKE=demo-lake; \
	$(PINPIPE) emulate --target kafka --records $(DEMO_POSTS) --seed 42; \
	$(PINPIPE) emulate --target kinesis --records $(DEMO_POSTS) --seed 42; \
	$(PINPIPE) stream --available-now; \
	$(PINPIPE) show

test: install
	$(PY) -m pytest

test-unit: install
	$(PY) -m pytest tests/unit

bench: install
	$(PY) benchmarks/kafka_to_delta.py
	$(PY) benchmarks/kinesis_source.py

clean:
	rm -rf $(VENV) deploy/local/node_modules demo-lake .pinpipe
