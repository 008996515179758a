"""The pipeline's SparkSession retries a failed task, as a cluster does."""

from pyspark import TaskContext


def fail_first_attempt(rows):
    if TaskContext.get().attemptNumber() == 0:
        raise RuntimeError("transient: first attempt fails")
    yield sum(1 for _ in rows)


def test_a_task_that_fails_once_is_retried_and_the_job_succeeds(spark):
    assert spark.sparkContext.master.endswith(",4]")
    counts = spark.sparkContext.parallelize(range(100), 2).mapPartitions(fail_first_attempt).collect()
    assert sum(counts) == 100
