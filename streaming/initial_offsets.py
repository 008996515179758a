"""A query's initial offsets, resolved once and kept in its checkpoint (as Spark's Kafka source does).

Spark asks a Python source for its initial offset again when a query restarts before batch 0 was
committed, and replays batch 0 from whatever it answers. ``latest`` (or a Kinesis AT_TIMESTAMP of
"now") would then be another position: records lost or read twice. So the first answer is written
to ``<checkpoint>/pinpipe/initial-offsets-<source>.json`` before batch 0 runs, and every later call
returns it. The shell passes that path as the source option ``initialOffsetsPath``.
"""

from __future__ import annotations

import json
import os
from typing import Callable

from pyarrow import fs

OPTION = "initialOffsetsPath"


def initial_offsets_path(checkpoint: str, source: str) -> str:
    return f"{checkpoint.rstrip('/')}/pinpipe/initial-offsets-{source}.json"


def _filesystem(path: str) -> tuple[fs.FileSystem, str]:
    if path.startswith("dbfs:/"):  # Databricks: the workspace filesystem is mounted at /dbfs
        path = "/dbfs/" + path[len("dbfs:/"):].lstrip("/")
    if "://" in path:
        return fs.FileSystem.from_uri(path)
    return fs.LocalFileSystem(), os.path.abspath(path)


def pinned(path: str | None, resolve: Callable[[], dict]) -> dict:
    """The offsets stored at ``path``; else ``resolve()``'s, stored there first (atomically). No path: resolve."""
    if not path:
        return resolve()
    filesystem, location = _filesystem(path)
    try:
        with filesystem.open_input_stream(location) as stream:
            return json.loads(stream.read())
    except (FileNotFoundError, OSError) as error:
        if filesystem.get_file_info(location).type != fs.FileType.NotFound:
            raise RuntimeError(f"cannot read the initial offsets at {path}: {error}") from error
    offsets = resolve()
    body = json.dumps(offsets, sort_keys=True).encode()
    filesystem.create_dir(location.rsplit("/", 1)[0], recursive=True)
    if isinstance(filesystem, fs.LocalFileSystem):  # a file appears whole: written aside, then renamed
        with filesystem.open_output_stream(location + ".tmp") as out:
            out.write(body)
        filesystem.move(location + ".tmp", location)
    else:  # an object store PUT is atomic
        with filesystem.open_output_stream(location) as out:
            out.write(body)
    return offsets
