# Two commands for a fresh clone: `make demo` and `make test`. Each installs what it needs.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PINPIPE := $(VENV)/bin/pinpipe
PY_STAMP := $(VENV)/.installed
NODE_STAMP := deploy/local/node_modules/.installed
DEMO_POSTS ?= 5000

.PHONY: install airflow-venv package demo test test-unit bench clean

$(PY_STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]"
	$(PY) -m pinpipe.pyspark_bytecode
	touch $@

$(NODE_STAMP): deploy/local/package.json
	npm install --prefix deploy/local --no-audit --no-fund --loglevel=error
	touch $@

AIRFLOW_VENV := .venv-airflow
AIRFLOW_STAMP := $(AIRFLOW_VENV)/.installed

# Airflow gets a venv of its own: it brings pandas 3 and pyspark-client, which clash with the job's.
$(AIRFLOW_STAMP): deploy/airflow/requirements.txt
	$(PYTHON) -m venv $(AIRFLOW_VENV)
	$(AIRFLOW_VENV)/bin/python -m pip install --quiet -r deploy/airflow/requirements.txt
	touch $@

airflow-venv: $(AIRFLOW_STAMP)

install: $(PY_STAMP) $(NODE_STAMP)

# What a cluster runs (dist/): the wheel, the packed environment (venv-pack) and its unpacked copy
# for a client-mode driver. Cached: rebuilt only when the sources or pyproject.toml change.
package: $(PY_STAMP)
	$(PY) -m pinpipe.deploy package --unpack

# The whole pipeline on the embedded services, from an empty lake: emulator -> Kafka + Kinesis -> Spark -> Delta.
demo: install
	rm -rf demo-lake
	$(PINPIPE) local up
	set -e; trap '$(PINPIPE) local down' EXIT; \
	export PINPIPE_LAKE=demo-lake; \
	$(PINPIPE) emulate --target kafka --records $(DEMO_POSTS) --seed 42; \
	$(PINPIPE) emulate --target kinesis --records $(DEMO_POSTS) --seed 42; \
	$(PINPIPE) stream --available-now --archive; \
	$(PINPIPE) show; \
	echo "raw archive: $$(find demo-lake/raw -name '*.json' | wc -l) objects under demo-lake/raw/topics"; \
	echo "batch path over the raw archive, into a lake of its own:"; \
	PINPIPE_LAKE=demo-lake/batch PINPIPE_ARCHIVE=demo-lake/raw $(PINPIPE) batch; \
	PINPIPE_LAKE=demo-lake/batch $(PINPIPE) show --rows 0

test: install $(AIRFLOW_STAMP)
	$(PY) -m pytest

test-unit: install
	$(PY) -m pytest tests/unit

bench: install
	$(PY) benchmarks/kafka_to_delta.py
	$(PY) benchmarks/kinesis_source.py
	$(PY) benchmarks/batch_archive.py

clean:
	rm -rf $(VENV) $(AIRFLOW_VENV) deploy/local/node_modules demo-lake .pinpipe dist build
