"""Daily batch run of pinpipe over the raw archive, like the seed's DAG (@daily, no catchup, 1 retry).

The runner: the run's conf ``{"runner": ...}``, else the Airflow Variable ``pinpipe_runner``, else
``spark-submit``:

- ``spark-submit``: SparkSubmitOperator (connection ``spark_default``: the master, e.g.
  ``spark://host:7077`` or ``yarn``) submitting the packed environment that ``make package`` builds
  (Variable ``pinpipe_package_dir``: the folder with ``pinpipe-env.tar.gz``, ``spark_entry.py`` and,
  for a client-mode driver, the unpacked ``environment/``). Executors run ``./environment/bin/python``.
- ``databricks``: DatabricksSubmitRunOperator (connection ``databricks_default``): a wheel task on a
  job cluster (Variable ``pinpipe_databricks_wheel``: the uploaded wheel) whose environment carries
  the settings, secrets as references into a secret scope.

After the batch, ``pinpipe query`` runs the analytics queries the same way, then ``pinpipe maintain``
compacts, vacuums (with its retention setting, never below the safe floor) and checkpoints the
tables and prunes the query checkpoints; it is safe while the stream runs.

Settings: the non-secret ``PINPIPE_*`` values come from the Variable ``pinpipe_env`` (a JSON
object). Secret ones come from the Connection ``pinpipe_secrets`` (its extra: a JSON object of
``PINPIPE_*`` names and values), read when the task runs, masked in logs, handed to spark-submit in
its environment only (never on its command line nor in a rendered template). On Databricks they
are the secret scope ``pinpipe_databricks_secret_scope`` (Variable ``pinpipe_secret_names`` lists
the setting names; each is the scope's key in lower case).
"""

from __future__ import annotations

import contextlib
import json
import os
from datetime import datetime, timedelta

from airflow.providers.apache.spark.operators.spark_submit import SparkSubmitOperator
from airflow.providers.databricks.operators.databricks import DatabricksSubmitRunOperator
from airflow.sdk import DAG, task

PACKAGE_DIR = "{{ var.value.get('pinpipe_package_dir', '/opt/pinpipe/dist') }}"
CLUSTER_PYTHON = "./environment/bin/python"
SECRETS_CONN_ID = "pinpipe_secrets"


def databricks_env(plain: dict, secret_scope: str, secret_names: list) -> dict:
    """The job cluster's environment: plain values, and secrets as {{secrets/scope/key}} references."""
    return {**{k: str(v) for k, v in plain.items()},
            **{name: "{{secrets/%s/%s}}" % (secret_scope, name.lower()) for name in secret_names}}


class PinpipeSparkSubmitOperator(SparkSubmitOperator):
    """spark-submit of pinpipe's packed environment, with its secrets from a Connection at run time."""

    def execute(self, context):
        from airflow.sdk import BaseHook
        from airflow.sdk.exceptions import AirflowNotFoundException
        from airflow.sdk.log import mask_secret

        # Not template fields of SparkSubmitOperator: render them here.
        self._archives = self.render_template(self._archives, context)
        self._driver_memory = self.render_template(self._driver_memory, context)
        env = {str(k): str(v) for k, v in (self.env_vars or {}).items()}
        try:
            secrets = BaseHook.get_connection(SECRETS_CONN_ID).extra_dejson
        except AirflowNotFoundException:
            secrets = {}
        for name, value in secrets.items():
            if not str(name).startswith("PINPIPE_"):
                raise ValueError(f"connection {SECRETS_CONN_ID}: {name!r} is not a PINPIPE_* setting")
            mask_secret(str(value), name)
            env[name] = value if isinstance(value, str) else json.dumps(value)
        # The hook passes env_vars to spark-submit's environment in client mode; in YARN or k8s
        # cluster mode it would put them on the command line: refuse secrets there.
        self.env_vars = env
        hook = self._get_hook()
        if secrets and (hook._is_yarn or hook._is_kubernetes):
            raise ValueError("secrets must not be passed to a YARN/Kubernetes cluster-mode driver on the command "
                             "line: give them to the cluster (IAM role, YARN environment) instead")
        self._hook = hook
        # Client mode: Spark starts the driver's own Python workers (a Python data source's
        # planner) as ./environment/bin/python from the driver's working directory, so the driver
        # runs in the package folder, next to the unpacked environment.
        with contextlib.chdir(os.path.dirname(self.application)):
            return super().execute(context)


def pinpipe_spark_submit(task_id: str, args: list[str]) -> PinpipeSparkSubmitOperator:
    return PinpipeSparkSubmitOperator(
        task_id=task_id,
        application=f"{PACKAGE_DIR}/spark_entry.py",
        application_args=args,
        conn_id="spark_default",
        name=f"pinpipe-{args[0]}",
        archives=f"{PACKAGE_DIR}/pinpipe-env.tar.gz#environment",
        conf={
            "spark.sql.session.timeZone": "UTC",
            "spark.pyspark.python": CLUSTER_PYTHON,
            "spark.executorEnv.PYSPARK_PYTHON": CLUSTER_PYTHON,
            # A client-mode driver runs the unpacked copy of the same environment.
            "spark.pyspark.driver.python": f"{PACKAGE_DIR}/environment/bin/python",
            "spark.executor.memory": "{{ var.value.get('pinpipe_executor_memory', '1g') }}",
        },
        driver_memory="{{ var.value.get('pinpipe_driver_memory', '2g') }}",
        env_vars="{{ var.json.get('pinpipe_env', {}) }}",
    )


with DAG(
    dag_id="pinpipe_batch",
    description="pinpipe batch path: new raw-archive objects -> cleaning -> Delta tables",
    schedule="@daily",
    start_date=datetime(2026, 1, 1),
    catchup=False,
    default_args={"owner": "data-engineering", "retries": 1, "retry_delay": timedelta(minutes=2)},
    # No DAG params: the Databricks operator would forward them to the wheel task as named
    # parameters (`--runner=...`), which the pinpipe command does not take.
    tags=["pinpipe", "batch"],
    render_template_as_native_obj=True,  # env_vars and the Databricks payload render to dicts, not text
    user_defined_macros={"databricks_env": databricks_env},
) as dag:

    @task.branch(task_id="choose_runner")
    def choose_runner(dag_run=None) -> str:
        from airflow.sdk import Variable

        runner = ((dag_run.conf or {}) if dag_run else {}).get("runner") \
            or Variable.get("pinpipe_runner", default="spark-submit")
        if runner not in ("spark-submit", "databricks"):
            raise ValueError(f"runner must be spark-submit or databricks, got {runner!r}")
        return "batch_spark_submit" if runner == "spark-submit" else "batch_databricks"

    batch_spark_submit = pinpipe_spark_submit("batch_spark_submit", ["batch"])
    query_spark_submit = pinpipe_spark_submit("query_spark_submit", ["query"])
    maintain_spark_submit = pinpipe_spark_submit("maintain_spark_submit", ["maintain"])

    def databricks_run(task_id: str, args: list[str]) -> DatabricksSubmitRunOperator:
        return DatabricksSubmitRunOperator(
            task_id=task_id,
            databricks_conn_id="databricks_default",
            run_name=f"pinpipe-{args[0]}",
            tasks=[{
                "task_key": f"pinpipe_{args[0]}",
                "python_wheel_task": {"package_name": "pinpipe", "entry_point": "pinpipe", "parameters": args},
                # This build of pinpipe, uploaded by the deployment: not a PyPI name anyone could take.
                "libraries": [{"whl": "{{ var.value.get('pinpipe_databricks_wheel') }}"}],
                "new_cluster": {
                    "spark_version": "{{ var.value.get('pinpipe_databricks_spark_version', '18.x-scala2.13') }}",
                    "node_type_id": "{{ var.value.get('pinpipe_databricks_node_type', 'i3.xlarge') }}",
                    "num_workers": 2,
                    "spark_conf": {"spark.sql.session.timeZone": "UTC"},
                    "spark_env_vars": "{{ databricks_env(var.json.get('pinpipe_env', {}), "
                                      "var.value.get('pinpipe_databricks_secret_scope', 'pinpipe'), "
                                      "var.json.get('pinpipe_secret_names', [])) }}",
                },
            }],
        )

    batch_databricks = databricks_run("batch_databricks", ["batch"])
    query_databricks = databricks_run("query_databricks", ["query"])
    maintain_databricks = databricks_run("maintain_databricks", ["maintain"])

    choose_runner() >> [batch_spark_submit, batch_databricks]
    batch_spark_submit >> query_spark_submit >> maintain_spark_submit
    batch_databricks >> query_databricks >> maintain_databricks
