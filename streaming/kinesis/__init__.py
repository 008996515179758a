"""A Kinesis source for PySpark Structured Streaming, as a Spark 4 Python Data Source on boto3.

Open-source Spark has no Kinesis source for Python (the awslabs connector is JVM-only and has no
availableNow). This reader uses the Databricks Kinesis source's option names where they exist
(``streamName``, ``region``, ``endpointUrl``, ``initialPosition``, ``maxRecordsPerFetch``,
``maxRecordsPerTrigger``, ``shardFetchInterval``, ``roleArn``, ``roleSessionName``, ``roleExternalId``,
``stsEndpoint``, ``awsAccessKey``/``awsSecretKey``), Spark's Kafka source's ``failOnDataLoss``, and
``maxBytesPerTrigger`` (Delta's name), and emits
``partitionKey, data, stream, shardId, sequenceNumber, subSequenceNumber,
approximateArrivalTimestamp``.

One module a job: ``options`` (names, defaults, validation), ``positions`` (position arithmetic),
``shards`` (the pure resharding planner), ``records`` (KPL deaggregation, Arrow rows), ``client``
(boto3 clients, assumed roles), ``data_loss`` (failOnDataLoss), ``shard_reader`` (GetRecords on one shard),
``claims`` (where each task's read ended, per batch), ``reader`` (Spark's reader protocol: the driver plans, the
executors read; its docstring explains how).
"""

from streaming.kinesis.reader import KinesisDataSource, KinesisStreamReader

__all__ = ["KinesisDataSource", "KinesisStreamReader"]
