# The support matrix's environments (issue 26): one per Spark line besides the default one.
# Include from the Makefile (`include deploy/runtimes/runtimes.mk`); each line X.Y has
#   deploy/runtimes/spark-X.Y.txt            pyspark + delta-spark pins (the Python side)
#   deploy/jvm/runtimes/spark-X.Y/pom.xml    Spark's Kafka source, delta-spark, MSK IAM (the JVM side)
# and builds
#   .venv-spark-X.Y/                         `.[test]` (everything but Spark) + the pins, in one resolve
#   .pinpipe/jars-spark-X.Y/spark/           the pom's jars; pinpipe.jvm picks this folder for a venv
#                                            whose pyspark is X.Y (PINPIPE_JARS_DIR overrides)
# The newest line (4.2) is the default environment: .venv + .pinpipe/jars (`make install`).
# `make runtime-test-X.Y` runs the compatibility subset (RUNTIME_TESTS) in that environment; of the
# default install it needs only the local services' parts (the Kafka broker's jars, kinesalite), so
# include this file after the Makefile defines NODE_STAMP and the `jars` target, and before a rule
# whose prerequisites name RUNTIMES (the Makefile includes it right after `install`).
PYTHON ?= python3
RUNTIMES := 4.0 4.1
# The compatibility subset: the Kafka + Kinesis stream end to end, SIGKILL mid-run and restart, the
# availableNow batch over the archive, the Kinesis source's bounds and availableNow end on a Spark
# without the 4.2 reader hooks, a spark-submit.sh stream (and archive) on a standalone cluster (delta-spark
# on the executors); the seed's real records through the cleaning, a delta-spark batch replayed after
# a partial commit (the app transactions of that line's Delta), the matrix's files and the pre-4.2
# reader calls. The rest of the cleaning and sink units run on the default line only: they test
# the project's rules, which the subset's end-to-end runs already execute on each line.
RUNTIME_TESTS ?= tests/unit/test_runtimes.py tests/unit/test_python_sources_before_spark_4_2.py \
  tests/unit/streaming/kinesis/test_reader.py \
  "tests/unit/schemas/test_cleaning.py::test_seed_samples_split_exactly_into_clean_and_quarantine" \
  "tests/unit/streaming/test_native_sink.py::test_a_batch_replayed_after_a_partial_commit_writes_only_what_is_missing" \
  "tests/integration/test_kinesis_pipeline.py::test_one_process_runs_kafka_and_kinesis_together_and_available_now_drains_both" \
  "tests/integration/test_kinesis_pipeline.py::test_sigkill_mid_run_then_restart_loses_and_duplicates_nothing" \
  "tests/integration/test_batch.py::test_a_hand_made_archive_lands_like_the_stream_and_only_new_files_are_processed" \
  "tests/integration/test_kinesis_source.py::test_an_available_now_run_ends_where_it_began_in_bounded_batches" \
  "tests/integration/test_kinesis_source.py::test_row_cap_and_restart_resume_exactly_after_the_last_record" \
  "tests/integration/test_cluster.py::test_a_stream_on_the_cluster_lands_every_record_once"

.PHONY: $(foreach line,$(RUNTIMES),runtime-venv-$(line) runtime-test-$(line))

define RUNTIME_RULES
.venv-spark-$(1)/.installed: pyproject.toml deploy/runtimes/spark-$(1).txt
	rm -rf .venv-spark-$(1)
	$$(PYTHON) -m venv .venv-spark-$(1)
	.venv-spark-$(1)/bin/python -m pip install --quiet --upgrade pip
	$$(EDITABLE_TURN) .venv-spark-$(1)/bin/python -m pip install --quiet -e ".[test]" -r deploy/runtimes/spark-$(1).txt
	.venv-spark-$(1)/bin/python -m pinpipe.pyspark_bytecode
	touch $$@

.pinpipe/jars-spark-$(1)/.installed: deploy/jvm/runtimes/spark-$(1)/pom.xml
	rm -rf .pinpipe/jars-spark-$(1)
	$$(MAVEN_TURN) mvn -q -B -f deploy/jvm/runtimes/spark-$(1)/pom.xml dependency:copy-dependencies \
	  -DoutputDirectory=$$(CURDIR)/.pinpipe/jars-spark-$(1)/spark
	touch $$@

runtime-venv-$(1): .venv-spark-$(1)/.installed .pinpipe/jars-spark-$(1)/.installed

runtime-test-$(1): runtime-venv-$(1) jars $$(NODE_STAMP)
	PYTHONPATH=$$(CURDIR) .venv-spark-$(1)/bin/python -m pytest $$(RUNTIME_TESTS)
endef

$(foreach line,$(RUNTIMES),$(eval $(call RUNTIME_RULES,$(line))))
