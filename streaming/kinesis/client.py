"""boto3 clients of the Kinesis source: adaptive retries, epoch-second timestamps, assumed roles.

With ``roleArn`` every client the source builds signs with the role's credentials, and they renew
themselves: botocore's ``DeferredRefreshableCredentials`` over its ``AssumeRoleCredentialFetcher``
(the machinery behind ``role_arn`` in an AWS profile) calls STS again 15 minutes before they
expire, so a query outlives the role session (an hour by default). One credentials object per
process serves all clients (it is thread-safe).
"""

from __future__ import annotations

import functools
import threading

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


def _credentials_key(options: KinesisOptions) -> tuple:
    return (options.access_key, options.secret_key, options.region, options.role_arn, options.role_session_name,
            options.role_external_id, options.sts_endpoint)


def _now():
    # botocore's own clock, looked up at each call (its default argument is bound once, at import)
    from botocore import credentials

    return credentials._local_now()


@functools.cache
def _assumed_role(access_key, secret_key, region, role_arn, session_name, external_id, sts_endpoint):
    """Refreshable credentials of ``role_arn``, assumed with the given keys (or the default chain)."""
    import botocore.session
    from botocore.credentials import AssumeRoleCredentialFetcher, DeferredRefreshableCredentials

    source = botocore.session.get_session()  # default timestamp parsing: STS's Expiration stays a datetime
    if access_key:
        source.set_credentials(access_key, secret_key)
    fetcher = AssumeRoleCredentialFetcher(
        client_creator=functools.partial(source.create_client, region_name=region, endpoint_url=sts_endpoint),
        source_credentials=source.get_credentials(), role_arn=role_arn,
        extra_args={"RoleSessionName": session_name, **({"ExternalId": external_id} if external_id else {})},
    )
    return DeferredRefreshableCredentials(refresh_using=fetcher.fetch_credentials, method="assume-role",
                                          time_fetcher=_now)


def credentials(options: KinesisOptions):
    """The role's refreshable credentials (``roleArn``), or None: the keys given or the default chain."""
    return _assumed_role(*_credentials_key(options)) if options.role_arn else None


def _session(options: KinesisOptions):
    """A boto3 session with the source's credentials, whose clients parse timestamps as epoch seconds."""
    import boto3
    import botocore.session
    from botocore.credentials import CredentialProvider

    core = botocore.session.get_session()
    core.get_component("response_parser_factory").set_parser_defaults(timestamp_parser=epoch_seconds)
    role = credentials(options)
    if role is not None:
        class AssumedRole(CredentialProvider):
            METHOD = "assume-role"

            def load(self):
                return role

        core.get_component("credential_provider").insert_before("env", AssumedRole())
        return boto3.session.Session(botocore_session=core, region_name=options.region)
    return boto3.session.Session(botocore_session=core, region_name=options.region,
                                 aws_access_key_id=options.access_key, aws_secret_access_key=options.secret_key)


_clients: dict[tuple, object] = {}
_clients_lock = threading.Lock()


def kinesis_client(options: KinesisOptions):
    """A boto3 client whose retries (throttling included) are botocore's adaptive mode; one per endpoint
    and credentials in a process (clients are thread-safe; building one costs ~0.1 s, and an executor's
    Python worker runs one task after another)."""
    from botocore.config import Config

    key = (options.endpoint_url, _credentials_key(options))
    with _clients_lock:
        if key not in _clients:
            config = Config(retries={"max_attempts": 10, "mode": "adaptive"}, connect_timeout=10, read_timeout=60,
                            max_pool_connections=32)
            _clients[key] = _session(options).client("kinesis", endpoint_url=options.endpoint_url, config=config)
        return _clients[key]


_short_timeout_clients: dict[tuple, object] = {}
_short_timeout_lock = threading.Lock()


def timestamp_client(options: KinesisOptions):
    """A client that gives up after 3 s, for AT_TIMESTAMP iterators (see ShardReader.iterator); one per
    endpoint and credentials, with the same credentials (an assumed role too) as the source's client."""
    from botocore.config import Config

    key = (options.endpoint_url, _credentials_key(options))
    with _short_timeout_lock:
        if key not in _short_timeout_clients:
            _short_timeout_clients[key] = _session(options).client(
                "kinesis", endpoint_url=options.endpoint_url,
                config=Config(read_timeout=3, retries={"total_max_attempts": 1}))
        return _short_timeout_clients[key]
