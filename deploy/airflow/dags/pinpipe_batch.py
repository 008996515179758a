"""Daily batch run of pinpipe over the raw archive, like the seed's DAG (@daily, no catchup, 1 retry).

The runner is a DAG param (default: the Airflow Variable ``pinpipe_runner``, else ``spark-submit``):

- ``spark-submit``: SparkSubmitOperator (connection ``spark_default``) running the project's
  ``pinpipe/spark_entry.py batch``, the application spark-submit.sh launches;
- ``databricks``: DatabricksSubmitRunOperator (connection ``databricks_default``) running the same
  entry point as a spark_python_task on the cluster in Variable ``pinpipe_databricks_cluster_id``.

Settings (PINPIPE_*) come from the Airflow Variable ``pinpipe_env`` (a JSON object).
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta

from airflow.providers.apache.spark.operators.spark_submit import SparkSubmitOperator
from airflow.providers.databricks.operators.databricks import DatabricksSubmitRunOperator
from airflow.sdk import DAG, Param, task

PROJECT_DIR = os.environ.get("PINPIPE_PROJECT_DIR", "/opt/pinpipe")
ENTRY = f"{PROJECT_DIR}/pinpipe/spark_entry.py"

with DAG(
    dag_id="pinpipe_batch",
    description="pinpipe batch path: new raw-archive objects -> cleaning -> Delta tables",
    schedule="@daily",
    start_date=datetime(2026, 1, 1),
    catchup=False,
    default_args={"owner": "data-engineering", "retries": 1, "retry_delay": timedelta(minutes=2)},
    params={
        "runner": Param("{{ var.value.get('pinpipe_runner', 'spark-submit') }}", type="string",
                        description="spark-submit or databricks"),
    },
    tags=["pinpipe", "batch"],
    render_template_as_native_obj=True,  # env_vars renders to a dict, not its text
) as dag:

    @task.branch(task_id="choose_runner")
    def choose_runner(params=None, var=None) -> str:
        from airflow.sdk import Variable

        runner = (params or {}).get("runner") or "spark-submit"
        if "{{" in runner:  # the templated default: resolve it here
            runner = Variable.get("pinpipe_runner", default="spark-submit")
        if runner not in ("spark-submit", "databricks"):
            raise ValueError(f"runner must be spark-submit or databricks, got {runner!r}")
        return "batch_spark_submit" if runner == "spark-submit" else "batch_databricks"

    batch_spark_submit = SparkSubmitOperator(
        task_id="batch_spark_submit",
        application=ENTRY,
        application_args=["batch"],
        conn_id="spark_default",
        name="pinpipe-batch",
        conf={"spark.sql.session.timeZone": "UTC"},
        env_vars="{{ var.json.get('pinpipe_env', {}) }}",
    )

    batch_databricks = DatabricksSubmitRunOperator(
        task_id="batch_databricks",
        databricks_conn_id="databricks_default",
        run_name="pinpipe-batch",
        existing_cluster_id="{{ var.value.get('pinpipe_databricks_cluster_id', '') }}",
        spark_python_task={"python_file": "{{ var.value.get('pinpipe_databricks_entry', 'pinpipe/spark_entry.py') }}",
                           "parameters": ["batch"]},
        libraries=[{"pypi": {"package": "pinpipe"}}],
    )

    choose_runner() >> [batch_spark_submit, batch_databricks]
