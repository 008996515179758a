"""The Airflow DAG, loaded by real Airflow (in its own venv: it pulls pandas 3 and pyspark-client)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
AIRFLOW_PYTHON = ROOT / ".venv-airflow" / "bin" / "python"
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
        "operators": {t.task_id: type(t).__name__ for t in dag.tasks},
        "application": next((t.application for t in dag.tasks if hasattr(t, "application")), None),
    }
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def dagbag(tmp_path_factory):
    if not AIRFLOW_PYTHON.exists():
        pytest.skip("Airflow's own venv is missing: `make airflow-venv` creates it (`make test` does)")
    home = tmp_path_factory.mktemp("airflow-home")
    result = subprocess.run([str(AIRFLOW_PYTHON), "-c", LOAD, str(ROOT / "deploy" / "airflow" / "dags")],
                            capture_output=True, text=True, timeout=300,
                            env={"AIRFLOW_HOME": str(home), "PATH": "/usr/bin:/bin", "PINPIPE_PROJECT_DIR": str(ROOT)})
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


def test_the_dag_chooses_spark_submit_or_databricks(dagbag):
    dag = dagbag["dags"]["pinpipe_batch"]
    assert dag["tasks"] == ["batch_databricks", "batch_spark_submit", "choose_runner"]
    assert dag["downstream"]["choose_runner"] == ["batch_databricks", "batch_spark_submit"]
    assert dag["operators"]["batch_spark_submit"] == "SparkSubmitOperator"
    assert dag["operators"]["batch_databricks"] == "DatabricksSubmitRunOperator"
    assert dag["application"] == str(ROOT / "pinpipe" / "spark_entry.py")
