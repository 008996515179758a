#!/usr/bin/env bash
# One launcher for the streaming job and the batch path, on this machine or on a cluster.
#
#   ./spark-submit.sh stream [--available-now] [--sources kafka,kinesis] [--archive]
#   ./spark-submit.sh batch  [--from DATE --to DATE | --glob PATTERN]
#
# Where it runs (PINPIPE_RUNNER):
#   spark (default)  spark-submit on this machine, master PINPIPE_SPARK_MASTER (default local[2]):
#                    local[...]         the pyspark of .venv, in this process tree;
#                    spark://HOST:PORT  a standalone cluster, yarn  a YARN cluster (HADOOP_CONF_DIR):
#                                       ships the packed environment (make package; rebuilt when the
#                                       code changes); executors run ./environment/bin/python; the
#                                       driver runs here (client mode) or, with
#                                       PINPIPE_DEPLOY_MODE=cluster, in YARN.
#   emr              prints the EMR add-steps step (JSON); PINPIPE_EMR_CODE_URI=s3://bucket/prefix;
#                    PINPIPE_SUBMIT=1 uploads the package and adds the step to PINPIPE_EMR_CLUSTER_ID
#   emr-serverless   prints the EMR Serverless StartJobRun request; PINPIPE_EMR_CODE_URI,
#                    PINPIPE_EMR_APPLICATION_ID, PINPIPE_EMR_EXECUTION_ROLE_ARN; PINPIPE_SUBMIT=1 starts it
#   databricks       prints the Jobs runs/submit payload (a wheel task on a job cluster);
#                    PINPIPE_DATABRICKS_WHEEL (the uploaded wheel); PINPIPE_SUBMIT=1 submits it
#                    (databricks-sdk's configuration: DATABRICKS_HOST + a token or profile)
#
# Settings (PINPIPE_*) travel in the driver's environment. Secret ones (keys, passwords, Kafka
# client config) never go on a command line or into a printed spec: on a cluster they come from the
# cluster (IAM role / instance profile, a Databricks secret scope). Extra spark-submit options:
# SPARK_SUBMIT_OPTS_EXTRA.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
command="${1:?usage: spark-submit.sh stream|batch [options]}"
shift
case "$command" in stream|batch) ;; *) echo "spark-submit.sh: unknown command '$command' (stream or batch)" >&2; exit 2;; esac
runner="${PINPIPE_RUNNER:-spark}"
venv="${PINPIPE_VENV:-$here/.venv}"
[ -x "$venv/bin/python" ] || { echo "spark-submit.sh: no $venv/bin/python; run 'make install'" >&2; exit 2; }
deploy() { PYTHONPATH="$here${PYTHONPATH:+:$PYTHONPATH}" "$venv/bin/python" -m pinpipe.deploy "$@"; }
submit_flag=(); [ "${PINPIPE_SUBMIT:-0}" = 1 ] && submit_flag=(--submit)

case "$runner" in
  spark|local)
    master="${PINPIPE_SPARK_MASTER:-local[2]}"
    export SPARK_HOME="${SPARK_HOME:-$("$venv/bin/python" -c 'import os, pyspark; print(os.path.dirname(pyspark.__file__))')}"
    case "$master" in
      local*)
        export PYSPARK_PYTHON="$venv/bin/python" PYSPARK_DRIVER_PYTHON="$venv/bin/python"
        # The job's JVM packages (make install resolved them), the driver's JVM options, redaction.
        readarray -t job_options < <(PYTHONPATH="$here" "$venv/bin/python" -m pinpipe.deploy local-options)
        exec "$SPARK_HOME/bin/spark-submit" --master "$master" \
          --driver-memory "${PINPIPE_DRIVER_MEMORY:-4g}" "${job_options[@]}" \
          ${SPARK_SUBMIT_OPTS_EXTRA:-} "$here/pinpipe/spark_entry.py" "$command" "$@"
        ;;
      *)
        export SPARK_SUBMIT_OPTS_EXTRA="--driver-memory ${PINPIPE_DRIVER_MEMORY:-4g} ${SPARK_SUBMIT_OPTS_EXTRA:-}"
        deploy spark-submit --master "$master" --deploy-mode "${PINPIPE_DEPLOY_MODE:-client}" \
          --spark-submit "$SPARK_HOME/bin/spark-submit" "$command" "$@"
        ;;
    esac
    ;;
  emr) deploy emr-step "${submit_flag[@]}" "$command" "$@" ;;
  emr-serverless) deploy emr-serverless "${submit_flag[@]}" "$command" "$@" ;;
  databricks) deploy databricks "${submit_flag[@]}" "$command" "$@" ;;
  *) echo "spark-submit.sh: PINPIPE_RUNNER must be spark, emr, emr-serverless or databricks (got '$runner')" >&2; exit 2;;
esac
