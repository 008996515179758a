"""The Airflow DAG, loaded and rendered by real Airflow (in its own venv: it pulls pandas 3 and pyspark-client).

Its run, `airflow dags test pinpipe_batch` on the standalone cluster over the archive the cluster's stream
wrote, is in test_cluster.py (it shares that module's cluster stream).
"""

from __future__ import annotations

import json
import subprocess

import pytest

from tests.helpers.airflow import AIRFLOW_PYTHON, DAGS, MISSING, airflow_env

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


@pytest.fixture(scope="module")
def dagbag(tmp_path_factory):
    if not AIRFLOW_PYTHON.exists():
        pytest.skip(MISSING)
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
