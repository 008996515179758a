"""The Airflow DAG, loaded and run by real Airflow (in its own venv: it pulls pandas 3 and pyspark-client).

The run: `airflow dags test pinpipe_batch` against the standalone cluster of `spark_cluster.py`
(workers that cannot see the repository), through SparkSubmitOperator and the packed environment.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import uuid
from pathlib import Path

import pyarrow as pa
import pytest

from batch.archive import ArchiveLocation, write_records
from emulator.generator import Dirt, generate
from streaming.tables import read_delta
from tests.helpers import expected_tables
from tests.helpers.spark_cluster import ROOT, SPARK_HOME, cluster_unavailable_reason, shared_cluster

AIRFLOW_VENV = Path(os.environ.get("PINPIPE_AIRFLOW_VENV", ROOT / ".venv-airflow"))
if not AIRFLOW_VENV.exists() and (Path(sys.prefix).parent / ".venv-airflow").exists():
    AIRFLOW_VENV = Path(sys.prefix).parent / ".venv-airflow"  # a worktree: the main checkout's Airflow venv
AIRFLOW_PYTHON = AIRFLOW_VENV / "bin" / "python"
DAGS = ROOT / "deploy" / "airflow" / "dags"
SENTINEL = f"sentinel-secret-{uuid.uuid4().hex}"
LOAD = """
import json, sys
from airflow.dag_processing.dagbag import DagBag
bag = DagBag(dag_folder=sys.argv[1])
out = {"import_errors": {k: str(v) for k, v in bag.import_errors.items()}, "dags": {}}
for dag_id, dag in bag.dags.items():
    out["dags"][dag_id] = {
        "tasks": sorted(t.task_id for t in dag.tasks),
        "downstream": {t.task_id: sorted(t.downstream_task_ids) for t in dag.tasks},
        "timetable": repr(dag.timetable), "catchup": dag.catchup,
        "retries": dag.default_args.get("retries"), "retry_delay_s": dag.default_args["retry_delay"].total_seconds(),
        "operators": {t.task_id: type(t).__mro__[1].__name__ if type(t).__name__.startswith("Pinpipe")
                      else type(t).__name__ for t in dag.tasks},
        "application": next((t.application for t in dag.tasks if hasattr(t, "application")), None),
        "archives": next((t._archives for t in dag.tasks if hasattr(t, "_archives")), None),
    }
print(json.dumps(out))
"""


def airflow_env(home: Path, **extra: str) -> dict[str, str]:
    return {"AIRFLOW_HOME": str(home), "PATH": f"{AIRFLOW_VENV / 'bin'}:/usr/local/bin:/usr/bin:/bin",
            "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS), "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "HOME": str(home), **extra}


@pytest.fixture(scope="module")
def dagbag(tmp_path_factory):
    if not AIRFLOW_PYTHON.exists():
        pytest.skip("Airflow's own venv is missing: `make airflow-venv` creates it (`make test` does)")
    home = tmp_path_factory.mktemp("airflow-home")
    result = subprocess.run([str(AIRFLOW_PYTHON), "-c", LOAD, str(DAGS)], capture_output=True, text=True,
                            timeout=300, env=airflow_env(home))
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_the_dag_loads_without_import_errors(dagbag):
    assert dagbag["import_errors"] == {}
    assert set(dagbag["dags"]) == {"pinpipe_batch"}


def test_the_dag_is_daily_without_catchup_and_retries_once_after_two_minutes(dagbag):
    dag = dagbag["dags"]["pinpipe_batch"]
    assert "0 0 * * *" in dag["timetable"]
    assert dag["catchup"] is False
    assert (dag["retries"], dag["retry_delay_s"]) == (1, 120)


def test_the_dag_chooses_spark_submit_or_databricks_then_queries(dagbag):
    dag = dagbag["dags"]["pinpipe_batch"]
    assert dag["tasks"] == ["batch_databricks", "batch_spark_submit", "choose_runner", "maintain_databricks",
                            "maintain_spark_submit", "query_databricks", "query_spark_submit"]
    assert dag["downstream"]["choose_runner"] == ["batch_databricks", "batch_spark_submit"]
    assert dag["downstream"]["batch_spark_submit"] == ["query_spark_submit"]
    assert dag["downstream"]["batch_databricks"] == ["query_databricks"]
    # Table maintenance after the day's writes: compaction, vacuum, log checkpoints.
    assert dag["downstream"]["query_spark_submit"] == ["maintain_spark_submit"]
    assert dag["downstream"]["query_databricks"] == ["maintain_databricks"]
    assert dag["operators"]["maintain_spark_submit"] == "SparkSubmitOperator"
    assert dag["operators"]["batch_spark_submit"] == "SparkSubmitOperator"
    assert dag["operators"]["batch_databricks"] == "DatabricksSubmitRunOperator"
    # The packed environment is shipped, not a path into a checkout.
    assert dag["application"].endswith("/spark_entry.py") and "pinpipe_package_dir" in dag["application"]
    assert dag["archives"].endswith("pinpipe-env.tar.gz#environment")


RENDER = """
import json, sys
from airflow.dag_processing.dagbag import DagBag
from airflow.sdk.execution_time.context import VariableAccessor
dag = DagBag(dag_folder=sys.argv[1]).dags["pinpipe_batch"]
op = dag.get_task("batch_databricks")
context = {"var": {"value": VariableAccessor(deserialize_json=False), "json": VariableAccessor(deserialize_json=True)},
           "params": {}, "dag": dag, "task": op}
op.render_template_fields(context)
print(json.dumps(op._prepare_submit_json(context)))
"""


def test_the_databricks_branch_submits_a_wheel_run_that_carries_the_settings(dagbag, tmp_path):
    """The payload DatabricksSubmitRunOperator would send, rendered by Airflow, parsed by databricks-sdk."""
    from databricks.sdk.service.jobs import SubmitTask

    env = airflow_env(tmp_path, AIRFLOW_VAR_PINPIPE_ENV=json.dumps({"PINPIPE_LAKE": "s3://b/lake", "PINPIPE_PREFIX": "p"}),
                      AIRFLOW_VAR_PINPIPE_SECRET_NAMES=json.dumps(["PINPIPE_KAFKA__CLIENT_CONFIG"]),
                      AIRFLOW_VAR_PINPIPE_DATABRICKS_SECRET_SCOPE="prod",
                      AIRFLOW_VAR_PINPIPE_DATABRICKS_WHEEL="/Volumes/main/pinpipe/pinpipe-0.1.0-py3-none-any.whl")
    result = subprocess.run([str(AIRFLOW_PYTHON), "-c", RENDER, str(DAGS)], capture_output=True, text=True,
                            timeout=300, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    payload = json.loads(result.stdout.strip().splitlines()[-1])
    assert payload["run_name"] == "pinpipe-batch"
    task = SubmitTask.from_dict(payload["tasks"][0])
    assert task.as_dict() == payload["tasks"][0]  # only fields the Jobs API knows
    assert task.python_wheel_task.parameters == ["batch"] and not task.python_wheel_task.named_parameters
    assert task.libraries[0].whl == "/Volumes/main/pinpipe/pinpipe-0.1.0-py3-none-any.whl"
    assert task.new_cluster.spark_env_vars == {
        "PINPIPE_LAKE": "s3://b/lake", "PINPIPE_PREFIX": "p",
        "PINPIPE_KAFKA__CLIENT_CONFIG": "{{secrets/prod/pinpipe_kafka__client_config}}"}


def command_exists(name: str) -> bool:
    from pinpipe.cli import app

    return any((command.name or command.callback.__name__) == name for command in app.registered_commands)


@pytest.mark.integration
@pytest.mark.timeout(1800)
def test_airflow_runs_the_batch_on_the_cluster_through_spark_submit(dagbag, tmp_path_factory, tmp_path):
    reason = cluster_unavailable_reason()
    if reason:
        pytest.skip(reason)
    from pinpipe.deploy import build_package, unpacked_environment

    cluster = shared_cluster(tmp_path_factory)
    package = build_package()
    unpacked_environment(package)

    # An archive in the Connect S3 sink layout, with the seed's kinds of dirt.
    prefix = f"a{uuid.uuid4().hex[:10]}"
    messages = list(generate(150, 5, Dirt(misrouted_rate=0.05)))
    offsets: dict[str, int] = {}
    rows = []
    for kind, record in messages:
        topic = f"{prefix}.{kind}"
        rows.append({"topic": topic, "partition": 0, "offset": offsets.get(topic, 0),
                     "value": json.dumps(record).encode()})
        offsets[topic] = offsets.get(topic, 0) + 1
    archive, lake = tmp_path / "archive", tmp_path / "lake"
    write_records(ArchiveLocation(str(archive)), pa.Table.from_pylist(rows, schema=pa.schema(
        [("topic", pa.string()), ("partition", pa.int32()), ("offset", pa.int64()), ("value", pa.binary())])))

    home = tmp_path / "airflow-home"
    home.mkdir()
    settings = {"PINPIPE_PREFIX": prefix, "PINPIPE_LAKE": str(lake), "PINPIPE_ARCHIVE": str(archive),
                "PINPIPE_SHUFFLE_PARTITIONS": "2"}  # not the cluster's 200 on a 2-core test cluster
    env = airflow_env(
        home,
        SPARK_HOME=str(SPARK_HOME), JAVA_HOME=os.environ.get("JAVA_HOME", ""),
        AIRFLOW_CONN_SPARK_DEFAULT=json.dumps({"conn_type": "spark", "host": "spark://127.0.0.1",
                                               "port": cluster.master_port, "extra": {"deploy-mode": "client"}}),
        # The secret: in a Connection, handed to spark-submit's environment only.
        AIRFLOW_CONN_PINPIPE_SECRETS=json.dumps({"conn_type": "generic",
                                                 "extra": {"PINPIPE_S3__SECRET_KEY": SENTINEL}}),
        AIRFLOW_VAR_PINPIPE_RUNNER="spark-submit",
        AIRFLOW_VAR_PINPIPE_ENV=json.dumps(settings),
        AIRFLOW_VAR_PINPIPE_PACKAGE_DIR=str(package.environment.parent),
        AIRFLOW_VAR_PINPIPE_EXECUTOR_MEMORY="512m", AIRFLOW_VAR_PINPIPE_DRIVER_MEMORY="1g",
    )
    # spark-submit from the cluster's Spark distribution, on the PATH of the Airflow worker.
    env["PATH"] = f"{SPARK_HOME / 'bin'}:{env['PATH']}"
    migrate = subprocess.run([str(AIRFLOW_VENV / "bin" / "airflow"), "db", "migrate"], env=env, capture_output=True,
                             text=True, timeout=600)
    assert migrate.returncode == 0, migrate.stderr[-3000:]
    command = [str(AIRFLOW_VENV / "bin" / "airflow"), "dags", "test", "pinpipe_batch", "2026-11-25"]
    # A command another branch adds is skipped until it is merged (patterns are matched with fullmatch).
    missing = [name for name in ("query", "maintain") if not command_exists(name)]
    if missing:
        command += ["--mark-success-pattern", "(" + "|".join(missing) + ")_.*"]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=1500, cwd=tmp_path)
    output = result.stdout + result.stderr
    (tmp_path / "airflow.log").write_text(output)
    assert result.returncode == 0, output[-5000:]
    states = dict(re.findall(r"task_id=(\w+).*?(?:state|final_state)=(\w+)", output))
    assert re.search(r"Spark-Submit cmd: .*spark-submit.*--master spark://127\.0\.0\.1:\d+", output), output[-3000:]
    assert "Connected to Spark cluster with app ID app-" in output, "the batch did not run on the cluster"
    assert states.get("batch_spark_submit", "success") == "success", states
    assert states.get("maintain_spark_submit", "success") == "success", states

    expected = expected_tables(messages)
    for kind in ("pin", "geo", "user"):
        table = read_delta(str(lake / kind))
        assert table is not None, f"no {kind} table: the batch did not land\n{output[-3000:]}"
        assert sorted(table.column("ind").to_pylist()) == sorted(expected[kind]), kind
    assert read_delta(str(lake / "quarantine")).num_rows > 0  # the dirt is quarantined, not dropped

    assert SENTINEL not in output, "the secret reached Airflow's output"
    for log in home.rglob("*"):
        if log.is_file():
            assert SENTINEL.encode() not in log.read_bytes(), f"the secret is in {log}"
