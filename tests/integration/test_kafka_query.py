"""The job's Kafka query: Spark's own Kafka source with the options the settings give it, on a real broker."""

from __future__ import annotations

import time
import uuid

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

from pinpipe.pipeline import read_source
from pinpipe.settings import Settings

pytestmark = pytest.mark.integration


def recreate_topic(broker: str, topic: str, partitions: int = 2) -> None:
    admin = AdminClient({"bootstrap.servers": broker})
    if topic in admin.list_topics(timeout=10).topics:
        for future in admin.delete_topics([topic]).values():
            future.result(30)
        while topic in admin.list_topics(timeout=10).topics:  # deletion is asynchronous
            time.sleep(0.2)
    deadline = time.monotonic() + 30
    while True:
        try:
            for future in admin.create_topics([NewTopic(topic, num_partitions=partitions)]).values():
                future.result(30)
            return
        except Exception as error:  # noqa: BLE001 - "marked for deletion" until the broker is done
            if "TOPIC_ALREADY_EXISTS" not in str(error) or time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def produce(broker: str, topic: str, values: list[str]) -> None:
    producer = Producer({"bootstrap.servers": broker})
    for i, value in enumerate(values):
        producer.produce(topic, value=value.encode(), key=str(i).encode(), partition=i % 2)
    assert producer.flush(30) == 0


def run_available_now(spark, settings: Settings, checkpoint: str) -> list[list[str]] | Exception:
    """The settings' Kafka query with availableNow: each batch's values, or the query's error."""
    batches: list[list[str]] = []
    query = (read_source(spark, "kafka", settings.kafka_source_options()).writeStream
             .foreachBatch(lambda df, _: batches.append([r.value.decode() for r in df.select("value").collect()]))
             .trigger(availableNow=True).option("checkpointLocation", checkpoint).start())
    try:
        assert query.awaitTermination(180), "the availableNow query did not finish"
    except AssertionError:
        raise
    except Exception as error:  # noqa: BLE001 - the query's own failure is the result
        return error
    return batches


def settings_for(broker: str, prefix: str, **fields) -> Settings:
    return Settings(prefix=prefix, kafka={"bootstrap_servers": broker}, **fields)


def test_the_settings_cap_each_batch_and_every_record_is_read_once(spark, kafka_broker, tmp_path):
    settings = settings_for(kafka_broker, f"q{uuid.uuid4().hex[:8]}", max_offsets_per_trigger=100)
    values = [f"v{i}" for i in range(300)]
    recreate_topic(kafka_broker, settings.topic("pin"))
    produce(kafka_broker, settings.topic("pin"), values)
    batches = run_available_now(spark, settings, str(tmp_path / "cp"))
    sizes = [len(batch) for batch in batches if batch]
    assert sorted(v for batch in batches for v in batch) == sorted(values)
    assert len(sizes) >= 3 and max(sizes) <= 100, sizes
    produce(kafka_broker, settings.topic("pin"), ["late"])
    assert [v for batch in run_available_now(spark, settings, str(tmp_path / "cp")) for v in batch] == ["late"]


def test_a_recreated_topic_is_data_loss_unless_told_to_go_on(spark, kafka_broker, tmp_path):
    """The checkpoint's offsets are past the new log's end: Spark's source says records may be missing."""
    settings = settings_for(kafka_broker, f"q{uuid.uuid4().hex[:8]}")
    topic, checkpoint = settings.topic("pin"), str(tmp_path / "cp")
    recreate_topic(kafka_broker, topic)
    produce(kafka_broker, topic, [f"old{i}" for i in range(10)])
    assert sum(map(len, run_available_now(spark, settings, checkpoint))) == 10
    recreate_topic(kafka_broker, topic)
    produce(kafka_broker, topic, ["new0", "new1"])
    error = run_available_now(spark, settings, checkpoint)
    assert isinstance(error, Exception) and "data may have been" in str(error), error
    # Told to go on, the query moves its offsets to the new log's end (Spark warns, the records the
    # checkpoint cannot place are skipped) and reads what comes after.
    going_on = settings.model_copy(update={"fail_on_data_loss": False})
    assert not isinstance(run_available_now(spark, going_on, checkpoint), Exception)
    produce(kafka_broker, topic, ["after0", "after1"])
    assert sorted(v for batch in run_available_now(spark, going_on, checkpoint) for v in batch) == ["after0", "after1"]
