"""The application file for spark-submit: `spark-submit pinpipe/spark_entry.py stream|batch [options]`.

Settings come from the environment (PINPIPE_*), as for the `pinpipe` command; under spark-submit
the SparkSession (master, packages, cluster resources) is the one spark-submit configured.
"""

from pinpipe.cli import main

if __name__ == "__main__":
    main()
