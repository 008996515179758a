#!/usr/bin/env bash
# One launcher for the streaming job and the batch path, on local Spark, EMR or Databricks.
#
#   ./spark-submit.sh stream [--available-now] [--sources kafka,kinesis] [--archive]
#   ./spark-submit.sh batch  [--from DATE --to DATE | --glob PATTERN]
#
# Where it runs (PINPIPE_RUNNER):
#   local       (default) the pyspark in .venv, master PINPIPE_SPARK_MASTER (local[2])
#   emr         spark-submit on an EMR primary node: YARN, cluster deploy mode; ship the project
#               as a zip (--py-files) and its dependencies as a packed venv (PINPIPE_VENV_ARCHIVE)
#   databricks  prints the spark_python_task JSON for `databricks jobs submit` (or the Airflow
#               DatabricksSubmitRunOperator), which runs pinpipe/spark_entry.py on a cluster
#
# Settings travel as PINPIPE_* environment variables; on a cluster they are passed as
# spark.yarn.appMasterEnv.* / spark.executorEnv.* confs. Extra spark-submit options: SPARK_SUBMIT_OPTS_EXTRA.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
command="${1:?usage: spark-submit.sh stream|batch [options]}"
shift
case "$command" in stream|batch) ;; *) echo "spark-submit.sh: unknown command '$command' (stream or batch)" >&2; exit 2;; esac
runner="${PINPIPE_RUNNER:-local}"
entry="$here/pinpipe/spark_entry.py"

env_confs() {  # every PINPIPE_* variable, for the driver and the executors
  local name
  for name in $(compgen -e | grep '^PINPIPE_' || true); do
    printf -- '--conf\0spark.yarn.appMasterEnv.%s=%s\0--conf\0spark.executorEnv.%s=%s\0' \
      "$name" "${!name}" "$name" "${!name}"
  done
}

case "$runner" in
  local)
    venv="${PINPIPE_VENV:-$here/.venv}"
    [ -x "$venv/bin/spark-submit" ] || { echo "spark-submit.sh: no $venv/bin/spark-submit; run 'make install'" >&2; exit 2; }
    export PYSPARK_PYTHON="$venv/bin/python" PYSPARK_DRIVER_PYTHON="$venv/bin/python"
    exec "$venv/bin/spark-submit" --master "${PINPIPE_SPARK_MASTER:-local[2]}" \
      --driver-memory "${PINPIPE_DRIVER_MEMORY:-4g}" --conf spark.sql.session.timeZone=UTC ${SPARK_SUBMIT_OPTS_EXTRA:-} "$entry" "$command" "$@"
    ;;
  emr)
    : "${PINPIPE_VENV_ARCHIVE:?set PINPIPE_VENV_ARCHIVE to a venv packed with venv-pack (s3://.../pinpipe-venv.tar.gz)}"
    zip_file="$(mktemp -d)/pinpipe.zip"
    (cd "$here" && zip -qr "$zip_file" pinpipe schemas streaming batch emulator)
    mapfile -d '' confs < <(env_confs)
    exec spark-submit --master yarn --deploy-mode cluster \
      --archives "$PINPIPE_VENV_ARCHIVE#environment" \
      --conf spark.yarn.appMasterEnv.PYSPARK_PYTHON=./environment/bin/python \
      --conf spark.executorEnv.PYSPARK_PYTHON=./environment/bin/python \
      --conf spark.sql.session.timeZone=UTC "${confs[@]}" \
      --py-files "$zip_file" ${SPARK_SUBMIT_OPTS_EXTRA:-} "$entry" "$command" "$@"
    ;;
  databricks)
    python3 - "$command" "$@" <<'PY'
import json, os, sys
env = {k: v for k, v in os.environ.items() if k.startswith("PINPIPE_") and k != "PINPIPE_RUNNER"}
print(json.dumps({
    "run_name": f"pinpipe-{sys.argv[1]}",
    "tasks": [{
        "task_key": f"pinpipe_{sys.argv[1]}",
        "spark_python_task": {"python_file": os.environ.get("PINPIPE_DATABRICKS_ENTRY", "pinpipe/spark_entry.py"),
                              "parameters": sys.argv[1:]},
        "existing_cluster_id": os.environ.get("PINPIPE_DATABRICKS_CLUSTER_ID", "<cluster id>"),
        "libraries": [{"pypi": {"package": "pinpipe"}}],
    }],
    "environment_vars": env,
}, indent=2))
PY
    ;;
  *) echo "spark-submit.sh: PINPIPE_RUNNER must be local, emr or databricks (got '$runner')" >&2; exit 2;;
esac
