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


# ------------------------------------------------------------------ the launchers name the matrix's runtimes

def test_each_managed_runtime_is_a_line_of_the_matrix_with_its_spark_and_delta():
    from pinpipe.runtimes import DATABRICKS_18_LTS, EMR_8

    assert pins(RUNTIMES / "spark-4.0.txt") == {"pyspark": EMR_8.spark, "delta-spark": EMR_8.delta}
    assert pins(RUNTIMES / "spark-4.1.txt")["pyspark"] == DATABRICKS_18_LTS.spark
    python = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    for runtime_python in ("3.11", "3.12", "3.13"):  # EMR 8: 3.11-3.13; Databricks 18 LTS: 3.12
        major_minor = version(runtime_python)
        low, high = re.fullmatch(r">=(\d+\.\d+),<(\d+\.\d+)", python).groups()
        assert version(low) <= major_minor < version(high), f"requires-python {python} refuses Python {runtime_python}"


ENV = {"PINPIPE_LAKE": "s3://b/lake", "PINPIPE_PREFIX": "prod"}


def test_the_emr_specs_send_the_packages_of_emr_8s_spark_line():
    from pinpipe import deploy

    step = " ".join(deploy.emr_step("batch", [], "s3://b/code", ENV)["HadoopJarStep"]["Args"])
    request = deploy.emr_serverless_job_run("stream", [], "s3://b/code", "00abc", "arn:aws:iam::1:role/p", ENV)
    parameters = request["jobDriver"]["sparkSubmit"]["sparkSubmitParameters"]
    for spec in (step, parameters):
        assert "org.apache.spark:spark-sql-kafka-0-10_2.13:4.0.2" in spec
        assert "io.delta:delta-spark_2.13:4.0.0" in spec
        assert jvm.pom_properties()["spark.version"] not in spec.replace("4.0.2", "")  # nothing of the default line
    with pytest.raises(deploy.DeployError, match="emr-7.12.0.*not a tested release.*emr-spark-8.0.0"):
        deploy.emr_step("batch", [], "s3://b/code", {**ENV, "PINPIPE_EMR_RELEASE": "emr-7.12.0"})


def test_databricks_specs_name_runtime_18_lts_and_add_no_package_it_has_built_in():
    import yaml

    from pinpipe import deploy

    run = deploy.databricks_run("batch", [], "/Volumes/m/p/p.whl", ENV)
    cluster = run["tasks"][0]["new_cluster"]
    assert cluster["spark_version"] == "18.x-scala2.13"
    maven = [library["maven"]["coordinates"] for library in run["tasks"][0]["libraries"] if "maven" in library]
    assert maven and not any(coordinate.startswith(deploy.DATABRICKS_BUILT_IN) for coordinate in maven)
    bundle = yaml.safe_load((ROOT / "deploy" / "databricks" / "databricks.yml").read_text())
    assert bundle["variables"]["spark_version"]["default"] == "18.x-scala2.13"
    dag = (ROOT / "deploy" / "airflow" / "dags" / "pinpipe_batch.py").read_text()
    assert "'pinpipe_databricks_spark_version', '18.x-scala2.13'" in dag


@pytest.mark.parametrize("target", ["emr-step", "emr-serverless"])
def test_a_submit_to_a_cluster_of_another_release_is_refused_before_anything_is_uploaded(target, monkeypatch, capsys):
    moto = pytest.importorskip("moto")
    import boto3

    from pinpipe import deploy

    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(name, "testing")
    uploads = []
    monkeypatch.setattr(deploy, "upload", lambda *a, **k: uploads.append(a))
    monkeypatch.setattr(deploy, "build_package", lambda *a, **k: None)
    with moto.mock_aws():
        if target == "emr-step":
            cluster = boto3.client("emr").run_job_flow(
                Name="old", ReleaseLabel="emr-7.12.0", Instances={"InstanceCount": 1, "KeepJobFlowAliveWhenNoSteps": True,
                                                                 "MasterInstanceType": "m5.xlarge"},
                JobFlowRole="EMR_EC2_DefaultRole", ServiceRole="EMR_DefaultRole")["JobFlowId"]
            monkeypatch.setenv("PINPIPE_EMR_CLUSTER_ID", cluster)
        else:
            application = boto3.client("emr-serverless").create_application(
                name="old", releaseLabel="emr-7.12.0", type="SPARK")["applicationId"]
            monkeypatch.setenv("PINPIPE_EMR_APPLICATION_ID", application)
            monkeypatch.setenv("PINPIPE_EMR_EXECUTION_ROLE_ARN", "arn:aws:iam::123456789012:role/p")
        monkeypatch.setenv("PINPIPE_EMR_CODE_URI", "s3://b/code")
        monkeypatch.setenv("PINPIPE_LAKE", "s3://b/lake")
        assert deploy.main([target, "--submit", "batch"]) == 2
    assert "runs emr-7.12.0, the spec is for emr-spark-8.0.0" in capsys.readouterr().err
    assert uploads == []
