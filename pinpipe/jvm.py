"""The JVM packages the job adds to pyspark, pinned in ``deploy/jvm/spark/pom.xml``.

``make install`` resolves that pom from Maven Central into ``.pinpipe/jars/spark/``; a locally built
session and every spark-submit this project makes pass those files with ``spark.jars`` / ``--jars``
(a standalone or YARN cluster's executors fetch them from the driver). Launchers that resolve
packages themselves (EMR's ``--packages``) take the pom's coordinates instead.

The support matrix (``deploy/runtimes/``): that pom is the newest Spark line's. Each older line X.Y
has its own pom, ``deploy/jvm/runtimes/spark-X.Y/pom.xml``, resolved by ``make runtime-venv-X.Y`` into
``.pinpipe/jars-spark-X.Y/spark/`` beside its venv ``.venv-spark-X.Y``. The installed pyspark's line
chooses the pom and the jars folder, so a runtime venv uses its own jars with no setting;
``PINPIPE_JARS_DIR`` names another folder (the jars are then read from its ``spark/``).
"""

from __future__ import annotations

import os
import re
import xml.etree.ElementTree as ET
from importlib import metadata
from pathlib import Path

from schemas.errors import PinpipeError

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SPARK_POM = PROJECT_ROOT / "deploy" / "jvm" / "spark" / "pom.xml"  # the default (newest) line
SPARK_JARS_DIR = PROJECT_ROOT / ".pinpipe" / "jars" / "spark"
RUNTIME_POMS = PROJECT_ROOT / "deploy" / "jvm" / "runtimes"  # spark-X.Y/pom.xml
JARS_DIR_ENV = "PINPIPE_JARS_DIR"
_NS = {"m": "http://maven.apache.org/POM/4.0.0"}
_KAFKA_SOURCE_JAR = re.compile(r"spark-sql-kafka-0-10_2\.13-(\d+\.\d+\.\d+)\.jar")


class MissingJarsError(PinpipeError, RuntimeError):
    pass


class JarsMismatchError(PinpipeError, RuntimeError):
    pass


def spark_line(version: str) -> str:
    """``4.0.2`` -> ``4.0``."""
    return ".".join(version.split(".")[:2])


def pom_properties(pom: Path = SPARK_POM) -> dict[str, str]:
    root = ET.parse(pom).getroot()
    return {child.tag.split("}")[1]: child.text for child in root.find("m:properties", _NS)}


def installed_pyspark() -> str | None:
    """The version of the pyspark distribution this interpreter has (None: none installed as a package)."""
    try:
        return metadata.version("pyspark")
    except metadata.PackageNotFoundError:
        return None


def runtime_line() -> str | None:
    """The installed pyspark's Spark line when the matrix has a runtime of its own for it, else None
    (the default line, or no pyspark package)."""
    version = installed_pyspark()
    if version is None or spark_line(version) == spark_line(pom_properties()["spark.version"]):
        return None
    line = spark_line(version)
    return line if (RUNTIME_POMS / f"spark-{line}" / "pom.xml").exists() else None


def line_pom(line: str) -> Path:
    """The pom of Spark line ``4.0``/``4.1``/... (the newest line's is the default pom)."""
    if line == spark_line(pom_properties()["spark.version"]):
        return SPARK_POM
    pom = RUNTIME_POMS / f"spark-{line}" / "pom.xml"
    if not pom.exists():
        raise MissingJarsError(f"no pom for Spark {line}: the support matrix has "
                               f"{', '.join(sorted(p.parent.name for p in RUNTIME_POMS.glob('spark-*/pom.xml')))} "
                               "and the default line")
    return pom


def spark_pom() -> Path:
    line = runtime_line()
    return line_pom(line) if line else SPARK_POM


def spark_jars_dir() -> Path:
    if os.environ.get(JARS_DIR_ENV):
        return Path(os.environ[JARS_DIR_ENV]) / "spark"
    line = runtime_line()
    return PROJECT_ROOT / ".pinpipe" / f"jars-spark-{line}" / "spark" if line else SPARK_JARS_DIR


def spark_jars(jars_dir: Path | None = None) -> list[str]:
    """The resolved jar files (absolute paths), or a clear error when they were not resolved, or were
    resolved for another Spark line than the installed pyspark's."""
    jars_dir = jars_dir or spark_jars_dir()
    jars = sorted(str(path) for path in jars_dir.glob("*.jar"))
    if not jars:
        line = runtime_line()
        step = f"make runtime-venv-{line}" if line else "make install"
        pom = spark_pom()
        raise MissingJarsError(f"no JVM packages in {jars_dir}: run `{step}` (it resolves "
                               f"{pom.relative_to(PROJECT_ROOT)} from Maven Central)")
    pyspark = installed_pyspark()
    kafka = [match.group(1) for match in map(_KAFKA_SOURCE_JAR.fullmatch, (Path(jar).name for jar in jars)) if match]
    if pyspark and kafka and spark_line(kafka[0]) != spark_line(pyspark):
        raise JarsMismatchError(f"the JVM packages in {jars_dir} are for Spark {kafka[0]}, this pyspark is {pyspark}: "
                                f"unset {JARS_DIR_ENV} or point it at the jars of Spark {spark_line(pyspark)}")
    return jars


def spark_packages(pom: Path | None = None) -> list[str]:
    """``group:artifact:version`` of each direct dependency of the pom (for ``--packages``)."""
    pom = pom or spark_pom()
    properties = pom_properties(pom)
    root = ET.parse(pom).getroot()
    packages = []
    for dependency in root.iterfind("m:dependencies/m:dependency", _NS):
        group, artifact, version = (dependency.find(f"m:{tag}", _NS).text for tag in ("groupId", "artifactId", "version"))
        if version.startswith("${"):
            version = properties[version[2:-1]]
        packages.append(f"{group}:{artifact}:{version}")
    return packages
