"""Run specs for clusters: they parse with the services' own models and never carry a secret."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from pinpipe import deploy
from pinpipe.spark import DRIVER_JAVA_OPTIONS

ROOT = Path(__file__).resolve().parents[2]
SENTINEL = "sentinel-9f8e7d6c5b4a"
ENV = {
    "PINPIPE_LAKE": "s3://bucket/lake",
    "PINPIPE_PREFIX": "prod",
    "PINPIPE_KAFKA__BOOTSTRAP_SERVERS": "b-1.msk:9098",
    "PINPIPE_KAFKA__CLIENT_CONFIG": json.dumps({"sasl.password": SENTINEL}),
    "PINPIPE_KAFKA__SOURCE_OPTIONS": json.dumps({"kafka.sasl.jaas.config": f"x password={SENTINEL};"}),
    "PINPIPE_S3__SECRET_KEY": SENTINEL,
    "PINPIPE_KINESIS__ACCESS_KEY": SENTINEL,
    "PINPIPE_RUNNER": "emr",
    "PINPIPE_EMR_CODE_URI": "s3://bucket/code",
    "HOME": "/root",
}
CODE_URI = "s3://bucket/code/pinpipe"


def test_settings_split_into_plain_values_and_secret_names():
    plain, secret = deploy.split_settings(ENV)
    assert plain == {"PINPIPE_LAKE": "s3://bucket/lake", "PINPIPE_PREFIX": "prod",
                     "PINPIPE_KAFKA__BOOTSTRAP_SERVERS": "b-1.msk:9098"}
    assert secret == ["PINPIPE_KAFKA__CLIENT_CONFIG", "PINPIPE_KAFKA__SOURCE_OPTIONS", "PINPIPE_KINESIS__ACCESS_KEY",
                      "PINPIPE_S3__SECRET_KEY"]


def _stubbed(service: str):
    import boto3
    from botocore.stub import Stubber

    client = boto3.client(service, region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="y")
    return client, Stubber(client)


def test_the_emr_step_passes_botocore_validation_and_carries_no_secret(capsys):
    step = deploy.emr_step("batch", ["--glob", "*.pin/*"], CODE_URI, ENV)
    client, stubber = _stubbed("emr")
    stubber.add_response("add_job_flow_steps", {"StepIds": ["s-1"]}, {"JobFlowId": "j-1", "Steps": [step]})
    with stubber:
        assert client.add_job_flow_steps(JobFlowId="j-1", Steps=[step])["StepIds"] == ["s-1"]
    args = step["HadoopJarStep"]["Args"]
    assert args[:5] == ["spark-submit", "--master", "yarn", "--deploy-mode", "cluster"]
    assert args[args.index(f"{CODE_URI}/spark_entry.py") + 1:] == ["batch", "--glob", "*.pin/*"]
    assert f"{CODE_URI}/pinpipe-env.tar.gz#environment" in args
    assert "spark.yarn.appMasterEnv.PYSPARK_PYTHON=./environment/bin/python" in args
    assert "spark.yarn.appMasterEnv.PINPIPE_LAKE=s3://bucket/lake" in args
    # EMR resolves the job's JVM packages from Maven itself; the secret-bearing Kafka options are redacted.
    packages = args[args.index("--packages") + 1].split(",")
    assert any(p.startswith("org.apache.spark:spark-sql-kafka-0-10_2.13:") for p in packages), packages
    assert any(p.startswith("software.amazon.msk:aws-msk-iam-auth:") for p in packages), packages
    assert "io.delta:delta-spark_2.13:4.0.0" in packages, packages  # the native writer, of EMR 8 (Spark 4.0)
    assert "spark.sql.extensions=io.delta.sql.DeltaSparkSessionExtension" in args
    assert "spark.sql.catalog.spark_catalog=org.apache.spark.sql.delta.catalog.DeltaCatalog" in args
    assert any(a.startswith("spark.redaction.regex=") and "jaas" in a for a in args)
    assert SENTINEL not in json.dumps(step)
    warning = capsys.readouterr().err
    assert "PINPIPE_S3__SECRET_KEY" in warning and SENTINEL not in warning


def test_botocore_validation_is_live_a_broken_step_is_refused():
    from botocore.exceptions import ParamValidationError

    step = deploy.emr_step("batch", [], CODE_URI, ENV)
    del step["HadoopJarStep"]["Jar"]
    client, stubber = _stubbed("emr")
    stubber.add_response("add_job_flow_steps", {"StepIds": ["s-1"]})
    with stubber, pytest.raises(ParamValidationError, match="Jar"):
        client.add_job_flow_steps(JobFlowId="j-1", Steps=[step])


def test_the_emr_serverless_request_passes_botocore_validation_and_carries_no_secret():
    request = deploy.emr_serverless_job_run("stream", ["--archive"], CODE_URI, "00abc", "arn:aws:iam::1:role/pinpipe",
                                            ENV, log_uri="s3://bucket/logs")
    client, stubber = _stubbed("emr-serverless")
    stubber.add_response("start_job_run", {"applicationId": "00abc", "jobRunId": "r1",
                                           "arn": "arn:aws:emr-serverless:us-east-1:123456789012:/applications/00abc/jobruns/r1"}, request)
    with stubber:
        assert client.start_job_run(**request)["jobRunId"] == "r1"
    submit = request["jobDriver"]["sparkSubmit"]
    assert submit["entryPointArguments"] == ["stream", "--archive"]
    assert f"spark.archives={CODE_URI}/pinpipe-env.tar.gz#environment" in submit["sparkSubmitParameters"]
    assert "spark.emr-serverless.driverEnv.PINPIPE_PREFIX=prod" in submit["sparkSubmitParameters"]
    [defaults] = request["configurationOverrides"]["applicationConfiguration"]
    assert defaults["properties"]["spark.driver.extraJavaOptions"] == DRIVER_JAVA_OPTIONS
    assert SENTINEL not in json.dumps(request)


def test_the_databricks_run_parses_with_the_sdk_and_refers_to_secrets_in_a_scope():
    from databricks.sdk.service.jobs import SubmitTask

    run = deploy.databricks_run("batch", ["--from", "2026-11-01"], "/Volumes/main/pinpipe/pinpipe-0.1.0-py3-none-any.whl",
                                ENV, secret_scope="pinpipe-prod")
    assert SENTINEL not in json.dumps(run)
    task = run["tasks"][0]
    parsed = SubmitTask.from_dict(task)
    # Every field is one the Jobs API knows: the SDK's dataclasses keep them all on a round trip.
    assert parsed.as_dict() == task
    assert parsed.python_wheel_task.parameters == ["batch", "--from", "2026-11-01"]
    assert parsed.libraries[0].whl.startswith("/Volumes/")  # this build, not a PyPI name anyone can take
    env = parsed.new_cluster.spark_env_vars
    assert env["PINPIPE_LAKE"] == "s3://bucket/lake"
    assert env["PINPIPE_S3__SECRET_KEY"] == "{{secrets/pinpipe-prod/pinpipe_s3__secret_key}}"
    assert "environment_vars" not in run
    # Delta is built into the runtime: neither its package nor its session settings are passed.
    assert not any(lib.maven and lib.maven.coordinates.startswith("io.delta:") for lib in parsed.libraries)
    assert "spark.sql.extensions" not in parsed.new_cluster.spark_conf


def test_spark_submit_to_yarn_cluster_mode_ships_plain_settings_only():
    plain, _ = deploy.split_settings(ENV)
    args = deploy.spark_submit_args("stream", [], "/dist/pinpipe-env.tar.gz", "/dist/spark_entry.py", master="yarn",
                                    cluster_mode=True, plain_settings=plain)
    assert "spark.executorEnv.PINPIPE_PREFIX=prod" in args and SENTINEL not in " ".join(args)
    assert f"spark.driver.extraJavaOptions={DRIVER_JAVA_OPTIONS}" in args  # one argument, spaces and all
    assert "--packages" in args  # YARN cluster mode: the cluster resolves them
    client = deploy.spark_submit_args("stream", [], "/dist/pinpipe-env.tar.gz", "/dist/spark_entry.py",
                                      master="spark://h:7077", cluster_mode=False, plain_settings=plain)
    assert not any("PINPIPE_" in a for a in client)  # client mode: the settings stay in the driver's environment


def test_local_and_standalone_runs_ship_the_jars_make_install_resolved():
    options = deploy.job_options(local_jars=True)
    jars = options[options.index("--jars") + 1].split(",")
    assert any(Path(j).name.startswith("spark-sql-kafka-0-10_2.13-") for j in jars), jars
    assert any(Path(j).name.startswith("delta-spark_4.2_2.13-") for j in jars), jars
    assert "spark.sql.extensions=io.delta.sql.DeltaSparkSessionExtension" in options
    assert all(Path(j).is_file() for j in jars)
    # delta-spark's Python API travels inside its jar: on the driver's Python path through --py-files.
    [python_api] = options[options.index("--py-files") + 1].split(",")
    assert Path(python_api).name.startswith("delta-spark_") and python_api in jars


def test_the_cli_prints_specs_without_secrets_and_names_a_missing_setting(capsys):
    assert deploy.main(["emr-step", "batch"]) == 2  # PINPIPE_EMR_CODE_URI comes from os.environ, unset here
    assert "PINPIPE_EMR_CODE_URI is not set" in capsys.readouterr().err


def test_spark_submit_sh_prints_specs_without_secrets(tmp_path):
    import os
    import sys

    env = {**{k: v for k, v in os.environ.items() if not k.startswith("PINPIPE_")}, **ENV,
           "PINPIPE_VENV": sys.prefix, "PINPIPE_DATABRICKS_WHEEL": "/Volumes/main/pinpipe/p.whl",
           "PINPIPE_EMR_APPLICATION_ID": "00abc", "PINPIPE_EMR_EXECUTION_ROLE_ARN": "arn:aws:iam::1:role/p"}
    for runner, key in (("emr", "HadoopJarStep"), ("emr-serverless", "jobDriver"), ("databricks", "tasks")):
        result = subprocess.run([str(ROOT / "spark-submit.sh"), "batch"], env={**env, "PINPIPE_RUNNER": runner},
                                capture_output=True, text=True, timeout=120, cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        assert key in json.loads(result.stdout)
        assert SENTINEL not in result.stdout + result.stderr


# ------------------------------------------------------------------ the Databricks asset bundle


def _bundle_jobs() -> tuple[dict, dict]:
    yaml = pytest.importorskip("yaml")
    bundle_dir = ROOT / "deploy" / "databricks"
    bundle = yaml.safe_load((bundle_dir / "databricks.yml").read_text())
    resources: dict = {}
    for pattern in bundle["include"]:
        for path in sorted(bundle_dir.glob(pattern)):
            resources.update(yaml.safe_load(path.read_text())["resources"]["jobs"])
    variables = {name: str(spec.get("default", "")) for name, spec in bundle["variables"].items()}

    def resolve(value):
        if isinstance(value, dict):
            return {k: resolve(v) for k, v in value.items()}
        if isinstance(value, list):
            return [resolve(v) for v in value]
        if isinstance(value, str):
            unknown = set(re.findall(r"\$\{var\.(\w+)\}", value)) - set(variables)
            assert not unknown, f"undefined bundle variables {unknown}"
            whole = re.fullmatch(r"\$\{var\.(\w+)\}", value)
            resolved = re.sub(r"\$\{var\.(\w+)\}", lambda m: variables[m.group(1)], value)
            return int(resolved) if whole and resolved.isdigit() else resolved
        return value

    return bundle, resolve(resources)


def test_the_bundle_defines_a_continuous_stream_and_a_daily_batch_that_parse_with_the_sdk():
    from databricks.sdk.service.jobs import JobSettings

    bundle, jobs = _bundle_jobs()
    assert bundle["artifacts"]["pinpipe_wheel"]["type"] == "whl"
    assert set(jobs) == {"pinpipe_stream", "pinpipe_batch"}
    for name, job in jobs.items():
        parsed = JobSettings.from_dict(job)
        assert json.loads(json.dumps(parsed.as_dict(), sort_keys=True)) == json.loads(json.dumps(job, sort_keys=True)), \
            f"{name}: a field the Jobs API does not know"
        task = parsed.tasks[0]
        assert (task.python_wheel_task.package_name, task.python_wheel_task.entry_point) == ("pinpipe", "pinpipe")
        assert task.libraries[0].whl.endswith(".whl")
        env = parsed.job_clusters[0].new_cluster.spark_env_vars
        assert env["PINPIPE_LAKE"]
        for key, value in env.items():  # a secret only as a secret-scope reference
            if deploy.SECRET_SETTING.search(key):
                assert re.fullmatch(r"\{\{secrets/[\w-]+/\w+\}\}", value), key
    stream, batch = JobSettings.from_dict(jobs["pinpipe_stream"]), JobSettings.from_dict(jobs["pinpipe_batch"])
    assert stream.continuous.pause_status.value == "UNPAUSED"
    assert stream.tasks[0].python_wheel_task.parameters[0] == "stream"
    assert batch.schedule.quartz_cron_expression == "0 0 0 * * ?"
    assert batch.tasks[0].python_wheel_task.parameters == ["batch"]


def test_the_bundles_batch_and_stream_write_the_same_tables_under_their_own_checkpoints():
    from pinpipe.lake_checks import parent_folders
    from pinpipe.settings import Settings
    from schemas.contracts import TABLES

    _, jobs = _bundle_jobs()
    stream_env, batch_env = (jobs[name]["job_clusters"][0]["new_cluster"]["spark_env_vars"]
                             for name in ("pinpipe_stream", "pinpipe_batch"))
    stream = Settings(lake=stream_env["PINPIPE_LAKE"], archive=stream_env["PINPIPE_ARCHIVE"])
    batch = Settings(lake=batch_env["PINPIPE_LAKE"], archive=batch_env["PINPIPE_ARCHIVE"])
    assert [stream.table_path(t) for t in TABLES] == [batch.table_path(t) for t in TABLES]
    assert batch.archive_uri == stream.archive_uri  # the batch reads what the stream's --archive writes
    assert "--archive" in jobs["pinpipe_stream"]["tasks"][0]["python_wheel_task"]["parameters"]
    # Separate queries on the same tables: the archive's event time is its objects' write time.
    stream_checkpoints = {stream.checkpoint_path(query) for query in ("kafka", "kinesis", "archive")}
    assert batch.checkpoint_path("batch") not in stream_checkpoints
    assert stream.lake not in parent_folders(batch.lake) and batch.lake not in parent_folders(stream.lake)


def test_databricks_runs_of_the_batch_and_the_stream_name_the_same_lake():
    runs = [deploy.databricks_run(command, [], "/Volumes/m/p/p.whl", ENV) for command in ("batch", "stream")]
    lakes = {run["tasks"][0]["new_cluster"]["spark_env_vars"]["PINPIPE_LAKE"] for run in runs}
    assert lakes == {ENV["PINPIPE_LAKE"]}


def test_databricks_bundle_validate():
    cli = shutil.which("databricks")
    if not cli or b"bundle" not in subprocess.run([cli, "--help"], capture_output=True).stdout:
        pytest.skip("the Databricks CLI with `bundle` (a Go binary from GitHub releases) is not installable from "
                    "the package registries reachable here; PyPI's databricks-cli is the legacy one without bundles")
    result = subprocess.run([cli, "bundle", "validate"], cwd=ROOT / "deploy" / "databricks", capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr


# ------------------------------------------------------------------ packaging and the master


def test_the_package_fingerprint_changes_with_the_code(tmp_path):
    for name in ("pyproject.toml", *[f"{p}/__init__.py" for p in deploy.SOURCE_PACKAGES]):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("x = 1\n")
    before = deploy.source_fingerprint(tmp_path)
    assert deploy.source_fingerprint(tmp_path) == before
    (tmp_path / "streaming" / "__init__.py").write_text("x = 2\n")
    assert deploy.source_fingerprint(tmp_path) != before


def test_spark_keeps_the_master_a_launcher_chose(monkeypatch):
    from pinpipe.spark import launched_by_spark

    monkeypatch.delenv("PYSPARK_GATEWAY_PORT", raising=False)
    monkeypatch.delenv("DATABRICKS_RUNTIME_VERSION", raising=False)
    assert not launched_by_spark()
    monkeypatch.setenv("PYSPARK_GATEWAY_PORT", "41234")  # what spark-submit gives the Python driver
    assert launched_by_spark()


# ------------------------------------------------------------------ cluster defaults


def test_no_launcher_forces_shuffle_partitions_and_the_setting_travels_when_set():
    def confs(env):
        plain, _ = deploy.split_settings(env)
        submit = deploy.spark_submit_args("stream", [], "/dist/env.tar.gz", "/dist/entry.py", master="yarn",
                                          cluster_mode=True, plain_settings=plain)
        serverless = deploy.emr_serverless_job_run("stream", [], CODE_URI, "00abc", "arn:aws:iam::1:role/p", env)
        databricks = deploy.databricks_run("stream", [], "/Volumes/m/p/p.whl", env)["tasks"][0]["new_cluster"]
        return [" ".join(submit), " ".join(deploy.job_options(local_jars=False)),
                serverless["jobDriver"]["sparkSubmit"]["sparkSubmitParameters"],
                json.dumps(databricks["spark_conf"]), json.dumps(databricks["spark_env_vars"])]

    assert not any("spark.sql.shuffle.partitions" in text for text in confs(ENV))  # the cluster's own setting
    _, jobs = _bundle_jobs()
    for job in jobs.values():
        assert "spark.sql.shuffle.partitions" not in job["job_clusters"][0]["new_cluster"]["spark_conf"]
    submit, _, serverless, _, databricks_env = confs({**ENV, "PINPIPE_SHUFFLE_PARTITIONS": "64"})
    # PINPIPE_SHUFFLE_PARTITIONS reaches the driver's settings, which set it on the session (pinpipe.spark).
    assert "spark.yarn.appMasterEnv.PINPIPE_SHUFFLE_PARTITIONS=64" in submit
    assert "spark.emr-serverless.driverEnv.PINPIPE_SHUFFLE_PARTITIONS=64" in serverless
    assert json.loads(databricks_env)["PINPIPE_SHUFFLE_PARTITIONS"] == "64"


# ------------------------------------------------------------------ Kafka TLS files shipped with the job

CA = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
TLS = {"PINPIPE_KAFKA__AUTH__MECHANISM": "tls", "PINPIPE_KAFKA__AUTH__KEY_PASSWORD": SENTINEL}


def tls_env(ca: str, cert: str, key: str) -> dict[str, str]:
    return {**ENV, **TLS, "PINPIPE_KAFKA__AUTH__CA_LOCATION": ca, "PINPIPE_KAFKA__AUTH__CERT_LOCATION": cert,
            "PINPIPE_KAFKA__AUTH__KEY_LOCATION": key}


def pem_files(folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("ca.pem", "client.pem", "client.key"):
        (folder / name).write_text(CA)
    return [folder / name for name in ("ca.pem", "client.pem", "client.key")]


def app_master_env(args: list[str]) -> dict[str, str]:
    prefix = "spark.yarn.appMasterEnv."
    return dict(a[len(prefix):].split("=", 1) for a in args if a.startswith(prefix) and "PINPIPE_" in a)


def test_yarn_cluster_mode_ships_the_tls_files_and_the_driver_reads_the_copies(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    ca, cert, key = pem_files(tmp_path / "certs")
    plain, _ = deploy.split_settings(tls_env("certs/ca.pem", str(cert), str(key)))  # a relative one too
    args = deploy.spark_submit_args("stream", [], "/dist/env.tar.gz", "/dist/entry.py", master="yarn",
                                    cluster_mode=True, plain_settings=plain)
    assert args[args.index("--files") + 1].split(",") == [str(ca), str(cert), str(key)]
    driver_env = app_master_env(args)
    assert driver_env["PINPIPE_KAFKA__AUTH__CA_LOCATION"] == "./ca.pem"
    assert driver_env["PINPIPE_KAFKA__AUTH__CERT_LOCATION"] == "./client.pem"
    assert driver_env["PINPIPE_KAFKA__AUTH__KEY_LOCATION"] == "./client.key"
    assert SENTINEL not in " ".join(args)  # the key's password stays with the cluster

    # The driver's container: YARN puts --files in its working directory; the settings read there.
    container = tmp_path / "container"
    pem_files(container)
    monkeypatch.chdir(container)
    for name, value in {**driver_env, "PINPIPE_KAFKA__AUTH__KEY_PASSWORD": "p"}.items():
        monkeypatch.setenv(name, value)
    from pinpipe.settings import Settings

    settings = Settings()
    options = settings.kafka_source_options()
    assert options["kafka.security.protocol"] == "SSL"
    assert options["kafka.ssl.truststore.certificates"] == CA  # inline: executors need no file
    assert options["kafka.ssl.keystore.key"] == CA
    assert settings.kafka_config()["ssl.ca.location"] == "./ca.pem"  # the driver's librdkafka clients


def test_a_client_mode_driver_reads_the_tls_files_where_they_are():
    plain, _ = deploy.split_settings(tls_env("/certs/ca.pem", "/certs/c.pem", "/certs/c.key"))
    args = deploy.spark_submit_args("stream", [], "/dist/env.tar.gz", "/dist/entry.py", master="spark://h:7077",
                                    cluster_mode=False, plain_settings=plain)
    assert "--files" not in args
    env = {"PINPIPE_KAFKA__AUTH__CA_LOCATION": "certs/ca.pem"}
    deploy._absolute_settings(env, Path("/work/project"))  # the driver runs in the package's folder
    assert env["PINPIPE_KAFKA__AUTH__CA_LOCATION"] == "/work/project/certs/ca.pem"


def test_tls_files_that_cannot_be_shipped_are_refused_naming_the_setting(tmp_path):
    ca, cert, key = pem_files(tmp_path)
    with pytest.raises(deploy.DeployError, match="PINPIPE_KAFKA__AUTH__CA_LOCATION='/nowhere/ca.pem': no such file"):
        deploy.ship_tls_files(deploy.split_settings(tls_env("/nowhere/ca.pem", str(cert), str(key)))[0])
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "client.pem").write_text(CA)
    with pytest.raises(deploy.DeployError, match="CA_LOCATION and PINPIPE_KAFKA__AUTH__CERT_LOCATION have the same file name .client.pem."):
        deploy.ship_tls_files(deploy.split_settings(tls_env(str(tmp_path / "other" / "client.pem"), str(cert),
                                                            str(key)))[0])


def test_emr_ships_the_tls_files_from_s3_and_refuses_a_local_path(capsys):
    env = tls_env("s3://bucket/tls/ca.pem", "s3://bucket/tls/client.pem", "s3://bucket/tls/client.key")
    args = deploy.emr_step("stream", [], CODE_URI, env)["HadoopJarStep"]["Args"]
    assert args[args.index("--files") + 1] == "s3://bucket/tls/ca.pem,s3://bucket/tls/client.pem,s3://bucket/tls/client.key"
    assert "spark.yarn.appMasterEnv.PINPIPE_KAFKA__AUTH__CA_LOCATION=./ca.pem" in args
    request = deploy.emr_serverless_job_run("stream", [], CODE_URI, "00abc", "arn:aws:iam::1:role/p", env)
    parameters = request["jobDriver"]["sparkSubmit"]["sparkSubmitParameters"].split()
    assert "spark.files=s3://bucket/tls/ca.pem,s3://bucket/tls/client.pem,s3://bucket/tls/client.key" in parameters
    assert "spark.emr-serverless.driverEnv.PINPIPE_KAFKA__AUTH__KEY_LOCATION=./client.key" in parameters
    client, stubber = _stubbed("emr-serverless")
    stubber.add_response("start_job_run", {"applicationId": "00abc", "jobRunId": "r1",
                                           "arn": "arn:aws:emr-serverless:us-east-1:1:/applications/00abc/jobruns/r1"},
                         request)
    with stubber:
        client.start_job_run(**request)
    with pytest.raises(deploy.DeployError, match="PINPIPE_KAFKA__AUTH__CA_LOCATION='/home/me/ca.pem'.*upload it"):
        deploy.emr_step("stream", [], CODE_URI, {**env, "PINPIPE_KAFKA__AUTH__CA_LOCATION": "/home/me/ca.pem"})


def test_databricks_reads_the_tls_files_from_a_volume():
    env = tls_env("/Volumes/main/pinpipe/tls/ca.pem", "/Volumes/main/pinpipe/tls/c.pem", "/Volumes/main/pinpipe/tls/c.key")
    cluster = deploy.databricks_run("stream", [], "/Volumes/m/p/p.whl", env)["tasks"][0]["new_cluster"]
    assert cluster["spark_env_vars"]["PINPIPE_KAFKA__AUTH__CA_LOCATION"] == "/Volumes/main/pinpipe/tls/ca.pem"
    assert cluster["spark_env_vars"]["PINPIPE_KAFKA__AUTH__KEY_PASSWORD"] == "{{secrets/pinpipe/pinpipe_kafka__auth__key_password}}"
    with pytest.raises(deploy.DeployError, match="PINPIPE_KAFKA__AUTH__CA_LOCATION='/home/me/ca.pem'.*/Volumes"):
        deploy.databricks_run("stream", [], "/Volumes/m/p/p.whl", {**env, "PINPIPE_KAFKA__AUTH__CA_LOCATION": "/home/me/ca.pem"})
