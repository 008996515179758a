"""What the ``pinpipe`` commands log: the pipeline's own lines at INFO, Spark's JVM and py4j quiet.

Two levels (settings ``PINPIPE_LOG_LEVEL`` and ``PINPIPE_SPARK_LOG_LEVEL``, or ``pinpipe --verbose``):

- the pipeline's own loggers (``pinpipe``, ``streaming``, ``batch``, ...): INFO by default;
- Spark's JVM log (log4j2, configured by ``pinpipe/log4j2.properties`` when ``pinpipe`` starts the
  JVM itself) and py4j's Python loggers: ERROR by default. py4j logs every callback it serves at
  INFO ("Received command c on object id p0"), which is noise even when Spark's INFO is wanted, so
  py4j never goes below WARNING unless the Spark level is DEBUG.

Other libraries log at WARNING and above.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from importlib import resources
from typing import Annotated, Literal

from pydantic import BeforeValidator

# A setting's level, in either case, by log4j's or Python's name.
LogLevel = Annotated[Literal["DEBUG", "INFO", "WARN", "WARNING", "ERROR"],
                     BeforeValidator(lambda value: value.upper() if isinstance(value, str) else value)]
OWN_LOGGERS = ("pinpipe", "streaming", "batch", "schemas", "emulator", "api")
FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
LOG4J2_FILE = "log4j2.properties"
LOG4J2_LEVEL_PROPERTY = "pinpipe.spark.logLevel"  # read by log4j2.properties: ${sys:pinpipe.spark.logLevel}


def python_level(level: str) -> int:
    """'WARN' -> logging.WARNING, 'info' -> logging.INFO (log4j's and Python's names both accepted)."""
    name = level.upper()
    return logging.WARNING if name == "WARN" else logging.getLevelName(name)


def log4j_level(level: str) -> str:
    """'WARNING' -> 'WARN' (what log4j and ``SparkContext.setLogLevel`` accept)."""
    name = level.upper()
    return "WARN" if name == "WARNING" else name


@dataclass(frozen=True)
class LogLevels:
    own: str = "INFO"     # the pipeline's loggers
    spark: str = "ERROR"  # Spark's JVM and py4j

    def verbose(self) -> "LogLevels":
        """``--verbose``: the pipeline's DEBUG lines and Spark's warnings (or more, if the settings ask for it)."""
        return LogLevels(own="DEBUG", spark=min(self.spark, "WARN", key=python_level))


def configure(levels: LogLevels = LogLevels()) -> None:
    """Python logging of a ``pinpipe`` command: one stderr handler, the levels above."""
    logging.basicConfig(level=logging.WARNING, format=FORMAT, force=True)
    for name in OWN_LOGGERS:
        logging.getLogger(name).setLevel(python_level(levels.own))
    spark = python_level(levels.spark)
    logging.getLogger("py4j").setLevel(spark if spark <= logging.DEBUG else max(spark, logging.WARNING))


def log4j2_properties() -> str:
    """Path of the JVM's log4j2 configuration shipped in this package."""
    return str(resources.files("pinpipe") / LOG4J2_FILE)


def spark_java_options(level: str) -> str:
    """Driver JVM options that make Spark log through our log4j2 file at ``level``."""
    return f"-Dlog4j2.configurationFile=file:{log4j2_properties()} -D{LOG4J2_LEVEL_PROPERTY}={log4j_level(level).lower()}"
