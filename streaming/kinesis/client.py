"""boto3 clients of the Kinesis source: adaptive retries, epoch-second timestamps, assumed roles."""

from __future__ import annotations

import functools

from streaming.kinesis.options import KinesisOptions


def epoch_seconds(value) -> float:
    """botocore timestamp parser that keeps Kinesis's epoch seconds as a float.

    The default turns every record's ApproximateArrivalTimestamp into a datetime in the local zone
    (dateutil), which is a third of the client's CPU per record; Arrow converts the floats at once.
    """
    if isinstance(value, (int, float)):
        return float(value)
    from botocore.utils import parse_timestamp

    return parse_timestamp(value).timestamp()


def _session(**credentials):
    """A boto3 session whose clients parse timestamps with :func:`epoch_seconds`."""
    import boto3
    import botocore.session

    core = botocore.session.get_session()
    core.get_component("response_parser_factory").set_parser_defaults(timestamp_parser=epoch_seconds)
    return boto3.session.Session(botocore_session=core, **credentials)


def kinesis_client(options: KinesisOptions):
    """A boto3 client whose retries (throttling included) are botocore's adaptive mode."""
    from botocore.config import Config

    config = Config(retries={"max_attempts": 10, "mode": "adaptive"}, connect_timeout=10, read_timeout=60,
                    max_pool_connections=32)
    session = _session(aws_access_key_id=options.access_key, aws_secret_access_key=options.secret_key,
                       region_name=options.region)
    if options.role_arn:
        credentials = session.client("sts", endpoint_url=None).assume_role(
            RoleArn=options.role_arn, RoleSessionName=options.role_session_name)["Credentials"]
        session = _session(
            aws_access_key_id=credentials["AccessKeyId"], aws_secret_access_key=credentials["SecretAccessKey"],
            aws_session_token=credentials["SessionToken"], region_name=options.region,
        )
    return session.client("kinesis", endpoint_url=options.endpoint_url, config=config)


def timestamp_client(options: KinesisOptions):
    """A client that gives up after 3 s, for AT_TIMESTAMP iterators (see ShardReader.iterator)."""
    return _short_timeout_client(options.endpoint_url, options.region, options.access_key, options.secret_key)


@functools.cache
def _short_timeout_client(endpoint_url, region, access_key, secret_key):
    import boto3
    from botocore.config import Config

    return boto3.client("kinesis", endpoint_url=endpoint_url, region_name=region, aws_access_key_id=access_key,
                        aws_secret_access_key=secret_key, config=Config(read_timeout=3, retries={"total_max_attempts": 1}))
