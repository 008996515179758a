"""The support matrix's files agree: each Spark line's pins (deploy/runtimes/spark-X.Y.txt), its pom
(deploy/jvm/runtimes/spark-X.Y/pom.xml, the newest line's is deploy/jvm/spark/pom.xml), pyproject.toml's
`spark` extra, runtimes.mk and Delta's compatibility table. Reads files only: no Spark, no network."""

from __future__ import annotations

import re
import tomllib
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from pinpipe import jvm

ROOT = Path(__file__).resolve().parents[2]
RUNTIMES = ROOT / "deploy" / "runtimes"
NS = {"m": "http://maven.apache.org/POM/4.0.0"}

# Delta's compatibility with Spark lines, from its release notes (docs.delta.io/releases and the GitHub
# releases v4.1.0, v4.3.0, v4.4.0): the Spark lines each Delta line is built for.
DELTA_SPARK_LINES = {"4.0": {"4.0"}, "4.1": {"4.0", "4.1"}, "4.2": {"4.0", "4.1"}, "4.3": {"4.0", "4.1"},
                     "4.4": {"4.0", "4.1", "4.2"}}
# What PyPI's delta-spark wheels declare (Requires-Dist, checked 2026-12-03): pip refuses other pysparks.
DELTA_PYSPARK_RANGE = {"4.0.0": ("4.0.0", None), "4.0.1": ("4.0.0", None), "4.3.1": ("4.0.1", "4.1.1"),
                       "4.4.0": ("4.0.1", "4.2.0")}


def version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split("."))


def line_of(text: str) -> str:
    return ".".join(text.split(".")[:2])


def pins(path: Path) -> dict[str, str]:
    found = {}
    for raw in path.read_text().splitlines():
        entry = raw.split("#")[0].strip()
        if entry:
            name, _, pinned = entry.partition("==")
            found[name.strip()] = pinned.strip()
    return found


LINES = sorted((path.stem.removeprefix("spark-") for path in RUNTIMES.glob("spark-*.txt")), key=version)
NEWEST = LINES[-1]


def pom_of(line: str) -> Path:
    return jvm.SPARK_POM if line == NEWEST else jvm.RUNTIME_POMS / f"spark-{line}" / "pom.xml"


def dependencies(pom: Path) -> dict[str, dict]:
    """artifactId -> {version, exclusions}, of the pom's direct dependencies."""
    root = ET.parse(pom).getroot()
    found = {}
    for dependency in root.iterfind("m:dependencies/m:dependency", NS):
        exclusions = {(exclusion.find("m:groupId", NS).text, exclusion.find("m:artifactId", NS).text)
                      for exclusion in dependency.iterfind("m:exclusions/m:exclusion", NS)}
        found[dependency.find("m:artifactId", NS).text] = {"version": dependency.find("m:version", NS).text,
                                                           "exclusions": exclusions}
    return found


def test_the_matrix_has_the_managed_runtimes_lines():
    # EMR 8 (Spark 4.0), Databricks 18 LTS (4.1), the newest (4.2).
    assert LINES[:3] == ["4.0", "4.1", "4.2"]


@pytest.mark.parametrize("line", LINES)
def test_each_line_pins_exactly_pyspark_of_its_line_and_a_delta_built_for_it(line):
    pinned = pins(RUNTIMES / f"spark-{line}.txt")
    assert set(pinned) == {"pyspark", "delta-spark"}
    assert line_of(pinned["pyspark"]) == line
    assert line in DELTA_SPARK_LINES[line_of(pinned["delta-spark"])]
    low, high = DELTA_PYSPARK_RANGE[pinned["delta-spark"]]
    assert version(low) <= version(pinned["pyspark"]) and (high is None or version(pinned["pyspark"]) <= version(high))


@pytest.mark.parametrize("line", LINES)
def test_the_pom_of_each_line_has_its_pins_versions(line):
    pinned = pins(RUNTIMES / f"spark-{line}.txt")
    pom = pom_of(line)
    properties = jvm.pom_properties(pom)
    assert properties["spark.version"] == pinned["pyspark"]
    assert properties["delta.version"] == pinned["delta-spark"]
    delta_artifact = "delta-spark_2.13" if version(line_of(pinned["delta-spark"])) < (4, 1) else f"delta-spark_{line}_2.13"
    assert delta_artifact in dependencies(pom)
    if "token-provider.version" in properties:  # a patch release the registry serves, of the same line
        assert line_of(properties["token-provider.version"]) == line
    packages = jvm.spark_packages(pom)
    assert f"org.apache.spark:spark-sql-kafka-0-10_2.13:{pinned['pyspark']}" in packages
    assert f"io.delta:{delta_artifact}:{pinned['delta-spark']}" in packages


def test_the_newest_line_is_the_default_environment():
    extra = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert pins(RUNTIMES / f"spark-{NEWEST}.txt") == dict(spec.split("==") for spec in extra["spark"])
    assert "pinpipe[spark,test]" in extra["dev"]  # a runtime venv installs `test` + its own pins
    assert not any(spec.startswith(("pyspark", "delta-spark", "pinpipe[spark")) for spec in extra["test"])
    assert not (jvm.RUNTIME_POMS / f"spark-{NEWEST}").exists()


def test_runtimes_mk_builds_every_older_line():
    text = (RUNTIMES / "runtimes.mk").read_text()
    assert re.search(r"^RUNTIMES := (.*)$", text, re.M).group(1).split() == LINES[:-1]


@pytest.mark.parametrize("line", LINES[:-1])
def test_each_runtime_pom_keeps_the_default_poms_dependencies_and_exclusions(line):
    default, runtime = dependencies(jvm.SPARK_POM), dependencies(pom_of(line))
    rename = {name: (f"delta-spark_{line}_2.13" if f"delta-spark_{line}_2.13" in runtime else "delta-spark_2.13")
              if name.startswith("delta-spark_") else name for name in default}
    assert set(runtime) == set(rename.values())
    for name, dependency in default.items():
        assert dependency["exclusions"] <= runtime[rename[name]]["exclusions"], name
    assert jvm.pom_properties(pom_of(line))["msk-iam-auth.version"] == jvm.pom_properties()["msk-iam-auth.version"]


def test_a_runtime_venv_uses_its_own_pom_and_jars(monkeypatch, tmp_path):
    monkeypatch.delenv(jvm.JARS_DIR_ENV, raising=False)
    monkeypatch.setattr(jvm, "installed_pyspark", lambda: "4.0.2")
    assert jvm.spark_pom() == jvm.RUNTIME_POMS / "spark-4.0" / "pom.xml"
    assert jvm.spark_jars_dir() == jvm.PROJECT_ROOT / ".pinpipe" / "jars-spark-4.0" / "spark"
    monkeypatch.setattr(jvm, "installed_pyspark", lambda: jvm.pom_properties()["spark.version"])
    assert (jvm.spark_pom(), jvm.spark_jars_dir()) == (jvm.SPARK_POM, jvm.SPARK_JARS_DIR)
    monkeypatch.setenv(jvm.JARS_DIR_ENV, str(tmp_path))
    assert jvm.spark_jars_dir() == tmp_path / "spark"


def test_jars_of_another_spark_line_are_refused(monkeypatch, tmp_path):
    (tmp_path / "spark-sql-kafka-0-10_2.13-4.2.0.jar").touch()
    monkeypatch.setattr(jvm, "installed_pyspark", lambda: "4.0.2")
    with pytest.raises(jvm.JarsMismatchError, match="for Spark 4.2.0, this pyspark is 4.0.2"):
        jvm.spark_jars(tmp_path)
    monkeypatch.setattr(jvm, "installed_pyspark", lambda: "4.2.0")
    assert jvm.spark_jars(tmp_path) == [str(tmp_path / "spark-sql-kafka-0-10_2.13-4.2.0.jar")]
