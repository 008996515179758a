"""The Python streaming readers' admission control and availableNow types on every Spark of the matrix.

``pyspark.sql.streaming.datasource`` (``ReadLimit`` and its kinds, ``SupportsTriggerAvailableNow``) came
with Spark 4.2 (SPARK-55304). On Spark 4.0 and 4.1 the module does not exist and Spark calls a Python
``DataSourceStreamReader``'s ``latestOffset()`` with no arguments; it never calls
``getDefaultReadLimit`` or ``prepareForTriggerAvailableNow``. There, stand-ins with the same names and
fields keep the readers importable (so every session can register them); what the readers then do on
those Spark versions is in deploy/runtimes/README.md.
"""

from __future__ import annotations

from abc import ABC
from dataclasses import dataclass

import pyspark

SPARK_VERSION = tuple(int(part) for part in pyspark.__version__.split(".")[:2])
# Spark passes (start, limit) to latestOffset and calls the admission control / availableNow hooks.
READER_ADMISSION_CONTROL = SPARK_VERSION >= (4, 2)

if READER_ADMISSION_CONTROL:
    from pyspark.sql.streaming.datasource import (  # noqa: F401
        ReadAllAvailable,
        ReadLimit,
        ReadMaxFiles,
        ReadMaxRows,
        SupportsTriggerAvailableNow,
    )
else:
    class ReadLimit:
        """Stand-in (Spark < 4.2): Spark never passes one."""

    @dataclass
    class ReadAllAvailable(ReadLimit):
        pass

    @dataclass
    class ReadMaxRows(ReadLimit):
        max_rows: int

    @dataclass
    class ReadMaxFiles(ReadLimit):
        max_files: int

    class SupportsTriggerAvailableNow(ABC):  # noqa: B024 - a marker here: Spark < 4.2 never calls it
        def prepareForTriggerAvailableNow(self) -> None:
            raise NotImplementedError


# Option of the Python sources: the epoch seconds at which an availableNow run began, set by pinpipe on
# Spark < 4.2 (where Spark never calls prepareForTriggerAvailableNow); the run ends at what was there then.
AVAILABLE_NOW_UNTIL = "availableNowUntil"


class RemembersBatchStart:
    """Spark < 4.2 calls ``latestOffset()`` without the batch's start: the reader keeps where the next
    batch starts (the initial offset, then the end of every batch Spark plans, replays or has committed,
    which a restart announces as ``partitions(end, end)``). On 4.2+ Spark passes the start itself."""

    _next_start: dict | None = None

    def batch_start(self, start: dict | None) -> dict:
        if start is not None:
            return start
        if self._next_start is None:
            self._next_start = self.initialOffset()
        return self._next_start

    def planned(self, end: dict) -> dict:
        self._next_start = end
        return end
