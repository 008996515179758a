# Two commands for a fresh clone: `make demo` and `make test`. Each installs what it needs.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PINPIPE := $(VENV)/bin/pinpipe
PY_STAMP := $(VENV)/.installed
NODE_STAMP := deploy/local/node_modules/.installed
DEMO_POSTS ?= 5000
# `make test` builds its prerequisites in parallel (they wait on the network more than the CPU); these
# steps share state and take turns: editable installs write pinpipe.egg-info into the source tree, and
# Maven runs share ~/.m2.
EDITABLE_TURN := mkdir -p .pinpipe && flock .pinpipe/editable-install.lock
MAVEN_TURN := mkdir -p .pinpipe && flock .pinpipe/maven.lock

.PHONY: install jars system-packages airflow-venv package demo test test-prerequisites test-unit test-delta-spark test-runtimes bench clean

$(PY_STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(EDITABLE_TURN) $(PY) -m pip install --quiet -e ".[dev]"
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

# JVM packages from Maven Central at the versions pinned in deploy/jvm/*/pom.xml: Spark's Kafka source
# (and what the job adds to pyspark) and the Apache Kafka broker of the local services.
JARS_DIR := .pinpipe/jars
JARS_STAMP := $(JARS_DIR)/.installed
$(JARS_STAMP): $(wildcard deploy/jvm/*/pom.xml)
	rm -rf $(JARS_DIR)
	set -e; for pom in deploy/jvm/*/pom.xml; do name=$$(basename $$(dirname $$pom)); \
	  $(MAVEN_TURN) mvn -q -B -f $$pom dependency:copy-dependencies -DoutputDirectory=$(CURDIR)/$(JARS_DIR)/$$name; done
	touch $@

jars: $(JARS_STAMP)

install: $(PY_STAMP) $(NODE_STAMP) $(JARS_STAMP)

# The support matrix's older Spark lines (EMR 8's 4.0, Databricks 18 LTS's 4.1): their venvs and subsets.
include deploy/runtimes/runtimes.mk

# Debian packages the tests use for real: Prometheus + promtool (metrics, alerts) and Chromium (the
# report's page test). Installed only where missing; needs root (as in CI).
SYSTEM_STAMP := .pinpipe/system-packages.installed
$(SYSTEM_STAMP):
	@missing=""; command -v promtool >/dev/null || missing="$$missing prometheus"; \
	command -v chromium >/dev/null || missing="$$missing chromium"; \
	if [ -n "$$missing" ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; fi
	mkdir -p .pinpipe && touch $@

system-packages: $(SYSTEM_STAMP)

# What a cluster runs (dist/): the wheel, the packed environment (venv-pack) and its unpacked copy
# for a client-mode driver. Cached: rebuilt only when the sources or pyproject.toml change.
package: $(PY_STAMP)
	$(PY) -m pinpipe.deploy package --unpack

# The whole pipeline on the embedded services, from an empty lake: emulator -> Kafka + Kinesis -> Spark -> Delta.
API_PORT ?= 8089
demo: install
	rm -rf demo-lake
	$(PINPIPE) local up
	set -e; export PINPIPE_LAKE=demo-lake; \
	$(PINPIPE) api --port $(API_PORT) > .pinpipe/local/api.log 2>&1 & api=$$!; \
	trap 'kill $$api; wait $$api || true; $(PINPIPE) local down' EXIT; \
	for i in $$(seq 150); do curl -sf http://127.0.0.1:$(API_PORT)/health >/dev/null && break; sleep 0.2; done; \
	echo "posting through the ingest API (Kafka REST Proxy v2 contract) at http://127.0.0.1:$(API_PORT) (docs: /docs)"; \
	$(PINPIPE) emulate --mode batch --target api --api-url http://127.0.0.1:$(API_PORT) --records $(DEMO_POSTS) --seed 42; \
	$(PINPIPE) emulate --target kinesis --records $(DEMO_POSTS) --seed 42; \
	echo "and a few through the API's Kinesis contract (API Gateway proxy), one record at a time:"; \
	$(PINPIPE) emulate --mode stream --target api --api-url http://127.0.0.1:$(API_PORT) --records 100 --rate 300 --seed 42 --no-progress; \
	$(PINPIPE) stream --available-now --archive; \
	$(PINPIPE) show; \
	echo "the seed's questions, as gold Delta tables (demo-lake/gold/*) and a report:"; \
	$(PINPIPE) query --rows 5; \
	$(PINPIPE) report --out demo-lake/report.html; \
	echo "metrics: pinpipe stream serves http://127.0.0.1:9108/metrics while it runs; Prometheus (alerts, graphs): $$($(PINPIPE) local status | grep prometheus)"; \
	echo "raw archive: $$(find demo-lake/raw -name '*.json' | wc -l) objects under demo-lake/raw/topics"; \
	echo "batch path over the raw archive, into the same tables (it fills in what the streams lack):"; \
	$(PINPIPE) batch; \
	$(PINPIPE) show --rows 0

# Every test but the table tests with the default writer (`auto`: delta-rs on a local master), and of
# those a SIGKILL test and the concurrent writers (both_writers); then every table test with delta-spark,
# the writer of every cluster: exactly-once under SIGKILL, Kafka + Kinesis at once, stream + backfill +
# maintain, quarantine, newest-wins. Then the compatibility subset on each older Spark line of the support
# matrix (EMR 8's 4.0, Databricks 18 LTS's 4.1), each in its own venv. Every part always runs; any failing
# fails the target.
test:
	$(MAKE) --no-print-directory -j4 --output-sync=target test-prerequisites
	status=0; $(PY) -m pytest -m "not tables or both_writers" || status=$$?; \
	$(MAKE) --no-print-directory test-delta-spark || status=$$?; \
	$(MAKE) --no-print-directory test-runtimes || status=$$?; \
	exit $$status

# Everything the tests use: the default install, Airflow's venv, Prometheus and Chromium, each older
# Spark line's venv and jars.
test-prerequisites: install $(AIRFLOW_STAMP) $(SYSTEM_STAMP) $(foreach line,$(RUNTIMES),runtime-venv-$(line))

test-delta-spark: install
	PINPIPE_SINK=delta-spark $(PY) -m pytest -m tables tests/integration

# The compatibility subset on each older Spark line of the support matrix, each in its own venv
# (deploy/runtimes/runtimes.mk).
test-runtimes:
	status=0; for line in $(RUNTIMES); do $(MAKE) --no-print-directory runtime-test-$$line || status=$$?; done; \
	exit $$status

test-unit: install
	$(PY) -m pytest tests/unit

bench: install
	$(PY) benchmarks/kafka_to_delta.py
	$(PY) benchmarks/kinesis_source.py
	$(PY) benchmarks/batch_archive.py
	$(PY) benchmarks/memory_backlog.py
	$(PY) benchmarks/cluster_driver_rss.py
	$(PY) benchmarks/latency.py
	$(PY) benchmarks/merge_pruning.py
	$(PY) benchmarks/commit_cost.py
	$(PY) benchmarks/soak.py
	$(PY) benchmarks/api_throughput.py
	command -v wrk >/dev/null || (apt-get update -qq && apt-get install -y -qq wrk >/dev/null)
	$(PY) benchmarks/api_load.py

clean:
	rm -rf $(VENV) $(AIRFLOW_VENV) $(foreach line,$(RUNTIMES),.venv-spark-$(line)) deploy/local/node_modules demo-lake .pinpipe dist build
