"""The managed runtimes the job is built and tested for, and the Spark line of each (deploy/runtimes/).

Each line's Python pins are ``deploy/runtimes/spark-X.Y.txt`` and its JVM packages its pom
(:func:`pinpipe.jvm.line_pom`); ``make runtime-test-X.Y`` runs the compatibility subset on it. The
launchers name these runtimes (the Databricks bundle and runs/submit payload, the EMR step and EMR
Serverless request) and send the packages of their line, so a spec never mixes Spark lines.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ManagedRuntime:
    platform: str
    release: str  # as the platform names it
    key: str  # what its API takes: EMR's release label, Databricks' spark_version
    spark: str
    delta: str
    python: str

    @property
    def spark_line(self) -> str:
        return ".".join(self.spark.split(".")[:2])


# Release notes: emr-spark-8.0.0 (May 2026) ships Spark 4.0.2, Delta 4.0.0, Python 3.11-3.13.
EMR_8 = ManagedRuntime("EMR", "emr-spark-8.0.0", "emr-spark-8.0.0", spark="4.0.2", delta="4.0.0", python="3.11-3.13")
# Databricks Runtime 18 LTS: Spark 4.1.0, Scala 2.13, Python 3.12, JDK 21; Delta and the Kafka source built in.
DATABRICKS_18_LTS = ManagedRuntime("Databricks", "18 LTS", "18.x-scala2.13", spark="4.1.0", delta="built in",
                                   python="3.12")

EMR_RELEASES = {runtime.key: runtime for runtime in (EMR_8,)}
