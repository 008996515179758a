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
import uuid
from urllib.parse import urlparse

OPTION = "claimsPath"


def claims_path(checkpoint: str, source: str) -> str:
    return f"{checkpoint.rstrip('/')}/pinpipe/claims-{source}"


class Claims:
    """The claims under one folder (a local path, ``dbfs:/...`` or ``s3://bucket/prefix``)."""

    def __init__(self, root: str) -> None:
        if root.startswith("dbfs:/"):  # Databricks: the workspace file system is mounted at /dbfs
            root = "/dbfs/" + root[len("dbfs:/"):].lstrip("/")
        self.root = root.rstrip("/")
        parsed = urlparse(self.root)
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

            try:
                self.client.put_object(Bucket=self._bucket, Key=key, Body=body, IfNoneMatch="*")
                return record
            except ClientError as error:
                if error.response["Error"]["Code"] not in ("PreconditionFailed", "412", "ConditionalRequestConflict"):
                    raise
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

    def of_batch(self, batch: int) -> dict[tuple[str, str], dict]:
        """{(stream, shard): claim} of every shard the batch's tasks read."""
        found: dict[tuple[str, str], dict] = {}
        for stream, shard in self._listed(batch):
            claim = self.get(batch, stream, shard)
            if claim is not None:
                found[(stream, shard)] = claim
        return found

    def _listed(self, batch: int) -> list[tuple[str, str]]:
        if self._s3:
            prefix, names = f"{self._prefix}/{batch}/", []
            for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self._bucket, Prefix=prefix):
                for item in page.get("Contents", []):
                    stream, _, name = item["Key"][len(prefix):].partition("/")
                    if name.endswith(".json") and "/" not in name:
                        names.append((stream, name[:-len(".json")]))
            return names
        folder = os.path.join(os.path.abspath(self.root), str(batch))
        if not os.path.isdir(folder):
            return []
        return [(stream, name[:-len(".json")]) for stream in sorted(os.listdir(folder))
                for name in sorted(os.listdir(os.path.join(folder, stream))) if name.endswith(".json")]

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
