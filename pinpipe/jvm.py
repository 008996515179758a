"""The JVM packages the job adds to pyspark, pinned in ``deploy/jvm/spark/pom.xml``.

``make install`` resolves that pom from Maven Central into ``.pinpipe/jars/spark/``; a locally built
session and every spark-submit this project makes pass those files with ``spark.jars`` / ``--jars``
(a standalone or YARN cluster's executors fetch them from the driver). Launchers that resolve
packages themselves (EMR's ``--packages``) take the pom's coordinates instead.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from schemas.errors import PinpipeError

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SPARK_POM = PROJECT_ROOT / "deploy" / "jvm" / "spark" / "pom.xml"
SPARK_JARS_DIR = PROJECT_ROOT / ".pinpipe" / "jars" / "spark"
_NS = {"m": "http://maven.apache.org/POM/4.0.0"}


class MissingJarsError(PinpipeError, RuntimeError):
    pass


def spark_jars(jars_dir: Path = SPARK_JARS_DIR) -> list[str]:
    """The resolved jar files (absolute paths), or a clear error when ``make install`` has not run."""
    jars = sorted(str(path) for path in jars_dir.glob("*.jar"))
    if not jars:
        raise MissingJarsError(f"no JVM packages in {jars_dir}: run `make install` (it resolves "
                               f"{SPARK_POM.relative_to(PROJECT_ROOT)} from Maven Central)")
    return jars


def spark_packages(pom: Path = SPARK_POM) -> list[str]:
    """``group:artifact:version`` of each direct dependency of the pom (for ``--packages``)."""
    root = ET.parse(pom).getroot()
    properties = {child.tag.split("}")[1]: child.text for child in root.find("m:properties", _NS)}
    packages = []
    for dependency in root.iterfind("m:dependencies/m:dependency", _NS):
        group, artifact, version = (dependency.find(f"m:{tag}", _NS).text for tag in ("groupId", "artifactId", "version"))
        if version.startswith("${"):
            version = properties[version[2:-1]]
        packages.append(f"{group}:{artifact}:{version}")
    return packages
