"""Where each task's read of a shard ended, per batch: written once, by the task that read, beside the checkpoint.

The executors read the shards (see :mod:`streaming.kinesis.reader`). A task reads its shard from the
batch's start position up to the batch's budget; only then does it know where the batch ends for that
shard. Before it hands a row to Spark it stores that end as the batch's *claim* for the shard,
``<claims>/<batch>/<stream>/<shard>.json``. The first claim stored wins: a task attempt that finds
one (a retry after a lost executor, a replay after a driver failure) reads exactly to it. So a batch
run again reads the records it read the first time, and the driver plans the next batch from the
claims of the last one.

Create-exclusive on every file system the checkpoint may live on: a local or mounted (``/dbfs``)
folder by a hard link, which fails when the name exists; S3 by a conditional PUT (``If-None-Match:
*``, answered 412 when the key exists).
"""

from __future__ import annotations

import json
import os
import time
import uuid
from urllib.parse import urlparse

from schemas.errors import OptionError, PinpipeError

OPTION = "claimsPath"


class ClaimsError(PinpipeError, RuntimeError):
    """A claim is not where it must be (a committed batch's, unseen by the driver) or is another checkpoint's."""


def claims_path(checkpoint: str, source: str) -> str:
    return f"{checkpoint.rstrip('/')}/pinpipe/claims-{source}"


class Claims:
    """The claims under one folder (a local path, ``dbfs:/...`` or ``s3://bucket/prefix``)."""

    def __init__(self, root: str) -> None:
        if root.startswith("dbfs:/"):  # Databricks: the workspace file system is mounted at /dbfs
            root = "/dbfs/" + root[len("dbfs:/"):].lstrip("/")
        self.root = root.rstrip("/")
        parsed = urlparse(self.root)
        if parsed.scheme == "file":
            self.root = parsed.path.rstrip("/")
        elif len(parsed.scheme) > 1 and parsed.scheme not in ("s3", "s3a"):
            # A claim must be created once, atomically, where the driver and every executor see it.
            raise OptionError(f"option {OPTION} is {root!r}: claims are kept on s3://, dbfs:/ or a folder every "
                              f"node mounts (NFS, /dbfs, /Volumes), not on {parsed.scheme}://; with the lake there, "
                              "set PINPIPE_KINESIS__CLAIMS_PATH")
        self._s3 = parsed.scheme in ("s3", "s3a")
        self._bucket, self._prefix = (parsed.netloc, parsed.path.lstrip("/")) if self._s3 else (None, None)
        self._client = None

    def __getstate__(self):
        return {"root": self.root}

    def __setstate__(self, state):
        self.__init__(state["root"])

    # -- paths ------------------------------------------------------------------------------------
    def _key(self, batch: int, stream: str, shard: str) -> str:
        relative = f"{batch}/{stream}/{shard}.json"
        return f"{self._prefix}/{relative}" if self._s3 else os.path.join(os.path.abspath(self.root), relative)

    @property
    def client(self):
        if self._client is None:
            import boto3  # the default credential chain and AWS_ENDPOINT_URL(_S3), as pyarrow's S3 file system

            self._client = boto3.client("s3")
        return self._client

    # -- the claims -------------------------------------------------------------------------------
    def claim(self, batch: int, stream: str, shard: str, record: dict) -> dict:
        """Store ``record`` as the claim of (batch, stream, shard) unless there is one; return the stored one."""
        body = json.dumps(record, sort_keys=True).encode()
        key = self._key(batch, stream, shard)
        if self._s3:
            from botocore.exceptions import ClientError

            for attempt in range(5):
                try:
                    self.client.put_object(Bucket=self._bucket, Key=key, Body=body, IfNoneMatch="*")
                    return record
                except ClientError as error:
                    code = error.response["Error"]["Code"]
                    if code == "ConditionalRequestConflict" and attempt < 4:  # a racing PUT in flight: ask again
                        time.sleep(0.2 * (attempt + 1))
                        continue
                    if code not in ("PreconditionFailed", "412", "ConditionalRequestConflict"):
                        raise
                    break
        else:
            os.makedirs(os.path.dirname(key), exist_ok=True)
            aside = f"{key}.{uuid.uuid4().hex}.tmp"
            with open(aside, "wb") as out:
                out.write(body)
                out.flush()
                os.fsync(out.fileno())
            try:
                os.link(aside, key)  # appears whole, and only if no claim is there
                return record
            except FileExistsError:
                pass
            finally:
                os.unlink(aside)
        found = self.get(batch, stream, shard)
        if found is None:
            raise RuntimeError(f"the claim of batch {batch}, {stream}/{shard} exists and cannot be read ({key})")
        return found

    def get(self, batch: int, stream: str, shard: str) -> dict | None:
        key = self._key(batch, stream, shard)
        if self._s3:
            from botocore.exceptions import ClientError

            try:
                return json.loads(self.client.get_object(Bucket=self._bucket, Key=key)["Body"].read())
            except ClientError as error:
                if error.response["Error"]["Code"] in ("NoSuchKey", "404"):
                    return None
                raise
        try:
            with open(key, "rb") as stored:
                return json.loads(stored.read())
        except FileNotFoundError:
            return None

    def of_batch(self, batch: int, read: list[str]) -> dict[tuple[str, str], dict]:
        """{(stream, shard): claim} of every shard the batch read (``read``: "stream/shard" names).

        The batch has committed, so each of its tasks stored a claim; one missing means the driver does
        not see the folder the executors wrote to, and planning on would read the shard again.
        """
        found: dict[tuple[str, str], dict] = {}
        for name in read:
            stream, shard = name.split("/", 1)
            claim = self.get(batch, stream, shard)
            if claim is None:
                raise ClaimsError(
                    f"batch {batch} read Kinesis {name}, and its claim is not in {self.root}: the driver must see "
                    f"the folder every executor writes to ({OPTION}: s3://, dbfs:/ or a shared mount)")
            found[(stream, shard)] = claim
        return found

    def forget_before(self, batch: int) -> None:
        """Drop the claims of batches before ``batch`` (committed: Spark never runs them again)."""
        if self._s3:
            old = []
            for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self._bucket,
                                                                                Prefix=f"{self._prefix}/"):
                for item in page.get("Contents", []):
                    head = item["Key"][len(self._prefix) + 1:].split("/", 1)[0]
                    if head.isdigit() and int(head) < batch:
                        old.append({"Key": item["Key"]})
            for start in range(0, len(old), 1000):
                self.client.delete_objects(Bucket=self._bucket, Delete={"Objects": old[start:start + 1000]})
            return
        import shutil

        root = os.path.abspath(self.root)
        if not os.path.isdir(root):
            return
        for name in os.listdir(root):
            if name.lstrip("-").isdigit() and int(name) < batch:
                shutil.rmtree(os.path.join(root, name), ignore_errors=True)
