"""The pipeline's SparkSession: it retries a failed task, as a cluster does, and its driver JVM has its options."""

from pyspark import TaskContext


def fail_first_attempt(rows):
    if TaskContext.get().attemptNumber() == 0:
        raise RuntimeError("transient: first attempt fails")
    yield sum(1 for _ in rows)


def test_a_task_that_fails_once_is_retried_and_the_job_succeeds(spark):
    assert spark.sparkContext.master.endswith(",4]")
    counts = spark.sparkContext.parallelize(range(100), 2).mapPartitions(fail_first_attempt).collect()
    assert sum(counts) == 100


def test_the_driver_jvm_uses_large_g1_regions_so_arrow_batches_are_not_humongous(spark):
    jvm = spark.sparkContext._jvm
    diagnostics = jvm.java.lang.management.ManagementFactory.getPlatformMXBean(
        jvm.java.lang.Class.forName("com.sun.management.HotSpotDiagnosticMXBean"))
    assert diagnostics.getVMOption("G1HeapRegionSize").getValue() == str(32 * 2**20)
    assert jvm.java.util.TimeZone.getDefault().getID() == "UTC"


def test_a_query_starts_once_its_sources_exist_so_queries_of_one_format_start_one_at_a_time(spark, tmp_path):
    """Two Python sources of one format initializing at once can corrupt a map Spark shares between
    them (see streaming.job.wait_for_sources): start_query returns only once its source exists."""
    from pyspark.sql.datasource import DataSource, DataSourceStreamReader, InputPartition

    from streaming.job import Trigger, start_query

    marker = tmp_path / "reader-created"

    class SlowToStart(DataSource):
        @classmethod
        def name(cls):
            return "slow-to-start"

        def schema(self):
            return "n int"

        def streamReader(self, schema):
            import pathlib
            import time as clock

            clock.sleep(2)
            pathlib.Path(self.options["marker"]).write_text("created")
            return Reader()

    class Reader(DataSourceStreamReader):
        def initialOffset(self):
            return {"n": 0}

        def latestOffset(self):
            return {"n": 0}

        def partitions(self, start, end):
            return [InputPartition(0)]

        def read(self, partition):
            return iter([])

    spark.dataSource.register(SlowToStart)
    stream = spark.readStream.format("slow-to-start").option("marker", str(marker)).load()
    query = start_query(stream, "slow", str(tmp_path / "checkpoint"), lambda batch, batch_id: None,
                        Trigger(interval="1 second"))
    try:
        assert marker.exists()
    finally:
        query.stop()
