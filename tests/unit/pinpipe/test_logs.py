"""Logging of the pinpipe commands: the levels each logger gets, and the JVM's log4j2 file."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from pinpipe import logs
from pinpipe.settings import load_settings


@pytest.fixture(autouse=True)
def restore_logging():
    loggers = {name: logging.getLogger(name).level for name in (*logs.OWN_LOGGERS, "py4j", "")}
    handlers = list(logging.root.handlers)
    yield
    for name, level in loggers.items():
        logging.getLogger(name).setLevel(level)
    logging.root.handlers[:] = handlers


def test_by_default_the_pipeline_logs_info_and_spark_and_py4j_only_errors():
    logs.configure(logs.LogLevels())
    assert logging.getLogger("streaming.progress").getEffectiveLevel() == logging.INFO
    assert logging.getLogger("pinpipe.cli").getEffectiveLevel() == logging.INFO
    assert logging.getLogger("py4j.clientserver").getEffectiveLevel() == logging.ERROR
    assert not logging.getLogger("py4j.clientserver").isEnabledFor(logging.INFO)  # "Received command c on object id p0"
    assert logging.root.level == logging.WARNING  # other libraries: warnings


def test_verbose_brings_back_the_pipeline_debug_lines_and_spark_warnings():
    levels = logs.LogLevels().verbose()
    assert levels == logs.LogLevels(own="DEBUG", spark="WARN")
    logs.configure(levels)
    assert logging.getLogger("streaming").isEnabledFor(logging.DEBUG)
    assert logging.getLogger("py4j").getEffectiveLevel() == logging.WARNING
    # A more detailed Spark level from the settings is kept; py4j's per-call INFO stays out below DEBUG.
    assert logs.LogLevels(spark="INFO").verbose().spark == "INFO"
    logs.configure(logs.LogLevels(spark="INFO"))
    assert logging.getLogger("py4j").getEffectiveLevel() == logging.WARNING
    logs.configure(logs.LogLevels(spark="DEBUG"))
    assert logging.getLogger("py4j").getEffectiveLevel() == logging.DEBUG


def test_the_settings_take_either_case_and_refuse_other_levels(monkeypatch):
    monkeypatch.setenv("PINPIPE_LOG_LEVEL", "debug")
    monkeypatch.setenv("PINPIPE_SPARK_LOG_LEVEL", "Warn")
    settings = load_settings()
    assert (settings.log_level, settings.spark_log_level) == ("DEBUG", "WARN")
    monkeypatch.setenv("PINPIPE_SPARK_LOG_LEVEL", "loud")
    with pytest.raises(ValueError, match="PINPIPE_SPARK_LOG_LEVEL"):
        load_settings()


def test_the_jvm_reads_the_shipped_log4j2_file_at_the_chosen_level():
    options = logs.spark_java_options("WARNING")
    path = Path(logs.log4j2_properties())
    assert f"-Dlog4j2.configurationFile=file:{path}" in options
    assert f"-D{logs.LOG4J2_LEVEL_PROPERTY}=warn" in options
    text = path.read_text()
    level = "${sys:%s:-error}" % logs.LOG4J2_LEVEL_PROPERTY
    assert f"rootLogger.level = {level}" in text
    # The gateway's logger at the root's level: otherwise Spark prints its "Setting default log level" banner.
    assert "logger.pyspark.name = org.apache.spark.api.python.PythonGatewayServer" in text
    assert f"logger.pyspark.level = {level}" in text
