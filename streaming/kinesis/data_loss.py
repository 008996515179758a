"""Lost records, handled as Spark's Kafka source handles them (``failOnDataLoss``).

Records the query still needed may be gone: a checkpointed shard that ListShards no longer returns
(expired past the stream's retention) before it was read to its end, or a position older than the
shard's trim horizon. With ``failOnDataLoss`` (the default) the query fails with an error naming
the stream, the shard and the positions; with ``failOnDataLoss=false`` a warning is logged and the
query goes on (from the shard's trim horizon, or without the shard). Like Spark's, the check can
raise a false alarm: Kinesis sequence numbers have gaps, so when the last consumed record has
expired the source cannot tell whether records between it and the trim horizon existed. A running
query does not raise it for an idle shard: a shard reader that found nothing after the position
less than 24 hours ago (the least retention) knows that nothing after it can have expired. A
query restarted after more than the retention can.
"""

from __future__ import annotations

import logging

from schemas.errors import DataLossError

log = logging.getLogger(__name__)


class KinesisDataLossError(DataLossError):
    """Records a Kinesis query still needed are gone (retention). See failOnDataLoss."""


def report_data_loss(message: str, fail: bool, then: str) -> None:
    """Fail with ``message``, or (``fail`` false) log it with what happens ``then`` and go on."""
    if fail:
        raise KinesisDataLossError(f"{message}. Set failOnDataLoss=false to go on without them")
    log.warning("data loss: %s; %s", message, then)
