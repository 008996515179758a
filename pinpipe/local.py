"""Embedded services on 127.0.0.1: Apache Kafka (KRaft, one node), Kinesis (kinesalite) and S3 (moto).

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
- Kafka: the broker's own log dir (formatted once). Without ``persistent`` it lives in a scratch
  folder under the state folder, deleted at stop.
- Kinesis: kinesalite's own on-disk LevelDB store (``--path``).

Kafka listens on four loopback ports: PLAINTEXT (the bootstrap every setting points at),
SASL_PLAINTEXT and SASL_SSL with SCRAM-SHA-512 (users :data:`KAFKA_USERS`, a throwaway CA), and its
KRaft CONTROLLER; :func:`kafka_listeners` tells clients where.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

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
    # What else clients or a restart need (kafka: every listener, the CA, the SCRAM users, its scratch folder).
    details: dict[str, Any] = field(default_factory=dict)


class ServiceError(PinpipeError, RuntimeError):
    pass


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# -- Apache Kafka: KRaft, broker and controller in one JVM, from the jars `make jars` resolves ---------------

KAFKA_JARS = PROJECT_ROOT / ".pinpipe" / "jars" / "kafka-broker"  # deploy/jvm/kafka-broker/pom.xml
KAFKA_SCRAM_MECHANISM = "SCRAM-SHA-512"
# SCRAM users, made when the log dir is formatted: "admin" for tools, "alice" for the tests.
KAFKA_USERS = {"admin": "admin-secret", "alice": "alice-secret"}
KAFKA_LISTENERS = ("PLAINTEXT", "SASL_PLAINTEXT", "SASL_SSL", "CONTROLLER")
# One small node on a busy machine: a serial collector, and the C1 compiler only (half the CPU to start;
# the local load never needs C2's faster code).
_KAFKA_JVM = ["-Xmx512m", "-Xms32m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1"]
_KAFKA_TOOL_JVM = ["-Xmx256m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1"]
# Log dirs formatted once per jar set and users, copied for each broker that keeps no data.
KAFKA_FORMAT_CACHE = PROJECT_ROOT / ".pinpipe" / "cache" / "kafka-format"
_SCRAM_JAAS = "org.apache.kafka.common.security.scram.ScramLoginModule required;"
_LOG4J2 = """status = error
appender.out.type = Console
appender.out.name = out
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = WARN
rootLogger.appenderRef.out.ref = out
logger.started.name = kafka.server.KafkaRaftServer
logger.started.level = INFO
"""
_KAFKA_STARTED = b"Kafka Server started"  # KafkaRaftServer's INFO line once every listener is up


@dataclass(frozen=True)
class KafkaListeners:
    """Where the local broker listens (``host:port``) and how a client authenticates on each listener."""

    plaintext: str       # no authentication: the bootstrap `local up` writes into the settings
    sasl_plaintext: str  # SASL/SCRAM-SHA-512 without TLS
    sasl_ssl: str        # SASL/SCRAM-SHA-512 over TLS; the certificate (IP 127.0.0.1) is signed by ca_location
    ca_location: str     # PEM of the throwaway CA: librdkafka ssl.ca.location, Java ssl.truststore.type=PEM
    users: dict[str, str]  # SCRAM user -> password
    mechanism: str = KAFKA_SCRAM_MECHANISM


def kafka_listeners(state_dir: Path) -> KafkaListeners:
    """The listeners, CA and SCRAM users of the broker running in ``state_dir``."""
    service = read_state(state_dir, "kafka")
    if service is None:
        raise ServiceError(f"kafka is not running in {state_dir}")
    listeners = service.details["listeners"]
    return KafkaListeners(plaintext=listeners["PLAINTEXT"], sasl_plaintext=listeners["SASL_PLAINTEXT"],
                          sasl_ssl=listeners["SASL_SSL"], ca_location=service.details["ca_location"],
                          users=dict(service.details["users"]))


def _kafka_tls(folder: Path) -> tuple[Path, Path]:
    """A throwaway CA (``ca.pem``) and the broker's key and certificate for IP 127.0.0.1 (``server.pem``).

    Made once per state folder, so clients keep trusting the broker across restarts (delete it for new ones).
    """
    ca_path, server_path = folder / "ca.pem", folder / "server.pem"
    if ca_path.exists() and server_path.exists():
        return ca_path, server_path
    import trustme
    from cryptography.hazmat.primitives import serialization

    folder.mkdir(parents=True, exist_ok=True)
    ca = trustme.CA()
    issued = ca.issue_cert("127.0.0.1")
    # Kafka's PEM key store reads PKCS#8 keys only; trustme writes the traditional format.
    key = serialization.load_pem_private_key(issued.private_key_pem.bytes(), password=None).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    server_path.write_bytes(key + b"".join(blob.bytes() for blob in issued.cert_chain_pems))
    server_path.chmod(0o600)
    ca.cert_pem.write_to_path(str(ca_path))
    return ca_path, server_path


def _kafka_properties(ports: dict[str, int], log_dir: Path, server_pem: Path) -> str:
    address = {name: f"127.0.0.1:{port}" for name, port in ports.items()}
    settings = {
        "process.roles": "broker,controller", "node.id": "1",
        "controller.listener.names": "CONTROLLER", "controller.quorum.bootstrap.servers": address["CONTROLLER"],
        "listeners": ",".join(f"{name}://{where}" for name, where in address.items()),
        "advertised.listeners": ",".join(
            f"{name}://{where}" for name, where in address.items() if name != "CONTROLLER"),
        "listener.security.protocol.map": ",".join(
            f"{name}:{'PLAINTEXT' if name == 'CONTROLLER' else name}" for name in address),
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.name.sasl_ssl.sasl.enabled.mechanisms": KAFKA_SCRAM_MECHANISM,
        # SASL_PLAINTEXT offers OAUTHBEARER too, with Kafka's default validator (unsigned tokens only),
        # so a test can watch MSK IAM's signed token reach a broker; PLAINTEXT is open anyway.
        "listener.name.sasl_plaintext.sasl.enabled.mechanisms": f"{KAFKA_SCRAM_MECHANISM},OAUTHBEARER",
        "listener.name.sasl_plaintext.oauthbearer.sasl.jaas.config":
            "org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule required;",
        **{f"listener.name.{listener}.{KAFKA_SCRAM_MECHANISM.lower()}.sasl.jaas.config": _SCRAM_JAAS
           for listener in ("sasl_plaintext", "sasl_ssl")},
        "listener.name.sasl_ssl.ssl.keystore.type": "PEM",
        "listener.name.sasl_ssl.ssl.keystore.location": str(server_pem),
        "log.dirs": str(log_dir),
        "num.partitions": "4",  # a topic created by producing to it (as the previous local broker did)
        "auto.create.topics.enable": "true",
        "offsets.topic.replication.factor": "1", "offsets.topic.num.partitions": "4",
        "transaction.state.log.replication.factor": "1", "transaction.state.log.min.isr": "1",
        "transaction.state.log.num.partitions": "4",
        "share.coordinator.state.topic.replication.factor": "1", "share.coordinator.state.topic.min.isr": "1",
        "min.insync.replicas": "1",
        "group.initial.rebalance.delay.ms": "0",
        "message.max.bytes": str(8 * 1024 * 1024),  # 1 MiB by default: the bad-input corpus has 1 MB+
        "log.cleaner.dedupe.buffer.size": str(16 * 1024 * 1024),  # 128 MB of heap by default, for compaction
    }
    return "".join(f"{key}={value}\n" for key, value in settings.items())


def _java() -> str:
    java = shutil.which("java")
    if java is None:
        raise ServiceError("java is missing: the local Kafka broker needs Java 17+ on PATH")
    if not any(KAFKA_JARS.glob("kafka_*.jar")):
        raise ServiceError(f"Apache Kafka's jars are missing from {KAFKA_JARS}: run `make jars`")
    return java


def _format_kafka(java: str, properties: Path, log4j: Path, log_dir: Path, log_path: Path) -> None:
    """Format the empty log dir of ``properties`` (a new cluster id, this node as the only controller, the users)."""
    cluster_id = "-"
    while cluster_id.startswith("-"):  # Kafka's Uuid as text, which never starts with "-" (an option)
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
    users = [arg for user, password in KAFKA_USERS.items()
             for arg in ("--add-scram", f"{KAFKA_SCRAM_MECHANISM}=[name={user},password={password}]")]
    done = subprocess.run(
        [java, *_KAFKA_TOOL_JVM, f"-Dlog4j2.configurationFile={log4j}", "-cp", str(KAFKA_JARS / "*"),
         "kafka.tools.StorageTool", "format", "-t", cluster_id, "-c", str(properties), "--standalone", *users],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, timeout=120)
    with open(log_path, "ab") as log:
        log.write(done.stdout)
    if done.returncode != 0:
        last = done.stdout.decode(errors="replace").strip().splitlines()[-1:] or ["no output"]
        raise ServiceError(f"kafka: formatting its log dir {log_dir} failed: {last[0]}; see {log_path}")


def _formatted_template(java: str, ports: dict[str, int], server_pem: Path, log4j: Path, log_path: Path) -> Path:
    """A formatted log dir to copy: formatting starts a JVM (~1.7 s of CPU), a copy takes milliseconds.

    Copies share the cluster id, harmless for clusters of one node on ports of their own (the voter's
    endpoint in it is refreshed from the listeners at start, as with ``--persist`` on new ports).
    """
    jars = sorted(path.name for path in KAFKA_JARS.glob("*.jar"))
    key = hashlib.sha256(json.dumps([jars, KAFKA_USERS, KAFKA_SCRAM_MECHANISM]).encode()).hexdigest()[:16]
    template = KAFKA_FORMAT_CACHE / key
    if not (template / "meta.properties").exists():
        KAFKA_FORMAT_CACHE.mkdir(parents=True, exist_ok=True)
        building = Path(tempfile.mkdtemp(prefix=f"{key}.", dir=KAFKA_FORMAT_CACHE))
        properties = building.parent / f"{building.name}.properties"
        try:
            properties.write_text(_kafka_properties(ports, building, server_pem))
            _format_kafka(java, properties, log4j, building, log_path)
            building.rename(template)
        except OSError:  # another start made it meanwhile
            shutil.rmtree(building, ignore_errors=True)
        finally:
            properties.unlink(missing_ok=True)
            shutil.rmtree(building, ignore_errors=True)
    return template


def _prepare_kafka(state_dir: Path, port: int, data: Path | None, log_path: Path,
                   ports: dict[str, int] | None) -> tuple[list[str], dict[str, Any]]:
    """Config, TLS material and a formatted log dir; the broker's command and its state details."""
    java = _java()
    chosen = {name: (ports or {}).get(name) or (port if name == "PLAINTEXT" else free_port())
              for name in KAFKA_LISTENERS}
    home = state_dir / "kafka"
    ca, server_pem = _kafka_tls(home / "tls")
    scratch = None if data else Path(tempfile.mkdtemp(prefix="kafka-scratch-", dir=state_dir))
    log_dir = data or scratch
    properties, log4j = home / "server.properties", home / "log4j2.properties"
    properties.write_text(_kafka_properties(chosen, log_dir, server_pem))
    log4j.write_text(_LOG4J2)
    try:
        if scratch:
            template = _formatted_template(java, chosen, server_pem, log4j, log_path)
            shutil.copytree(template, scratch, dirs_exist_ok=True)
        elif not (log_dir / "meta.properties").exists():  # --persist: formatted once
            _format_kafka(java, properties, log4j, log_dir, log_path)
    except BaseException:
        if scratch:
            shutil.rmtree(scratch, ignore_errors=True)
        raise
    command = [java, *_KAFKA_JVM, f"-Dlog4j2.configurationFile={log4j}", "-cp", str(KAFKA_JARS / "*"),
               "kafka.Kafka", str(properties)]
    details = {"listeners": {name: f"127.0.0.1:{p}" for name, p in chosen.items()}, "ca_location": str(ca),
               "users": KAFKA_USERS, "mechanism": KAFKA_SCRAM_MECHANISM, "scratch": str(scratch) if scratch else None}
    return command, details


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


def _kafka_ready(endpoint: str, log_path: Path, since: int) -> bool:
    """The broker says it started and answers a metadata request.

    Its PLAINTEXT listener can answer before another listener fails to bind (a taken port) and the
    broker shuts down, so the log line that comes after every listener is up counts too.
    """
    from confluent_kafka.admin import AdminClient

    with open(log_path, "rb") as log:
        log.seek(since)
        if _KAFKA_STARTED not in log.read():
            return False
    try:
        return bool(AdminClient({"bootstrap.servers": endpoint, "log_level": 0}).list_topics(timeout=2).brokers)
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


_COMMANDS: dict[str, Callable[[int, Path | None], list[str]]] = {  # kafka: _prepare_kafka
    "kinesis": _kinesis_command, "s3": _s3_command, "kinesis-mock": _kinesis_mock_command,
    "prometheus": _prometheus_command,
}
_ENVIRONMENTS: dict[str, Callable[[int, Path | None], dict[str, str]]] = {"kinesis-mock": _kinesis_mock_env}
PERSISTENT_SERVICES = ("kafka", "kinesis", "s3")


def _endpoint(name: str, port: int) -> str:
    return f"127.0.0.1:{port}" if name == "kafka" else f"http://127.0.0.1:{port}"


def _ready(name: str, endpoint: str, log_path: Path, log_start: int) -> bool:
    if name == "kafka":
        return _kafka_ready(endpoint, log_path, log_start)
    if name == "prometheus":
        return _http_ready(endpoint + "/-/ready")
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


def _recorded_state(state_dir: Path, name: str) -> RunningService | None:
    path = _state_file(state_dir, name)
    return RunningService(**json.loads(path.read_text())) if path.exists() else None


def read_state(state_dir: Path, name: str) -> RunningService | None:
    service = _recorded_state(state_dir, name)
    return service if service and _alive(service.pid) else None


def data_dir(state_dir: Path, name: str) -> Path:
    """Where a persistent service keeps its data (it outlives stop and restart; delete it to forget)."""
    return state_dir / f"{name}-data"


def start_service(name: str, state_dir: Path, timeout: float = 60.0, persistent: bool = False,
                  port: int | None = None, ports: dict[str, int] | None = None) -> RunningService:
    """Start one service on a loopback port (a free one unless ``port``) and wait until it answers.

    ``persistent``: the service keeps its data in :func:`data_dir` across stops and restarts.
    ``ports``: kafka's other listeners (:data:`KAFKA_LISTENERS`) on these ports instead of free ones.
    """
    state_dir = state_dir.resolve()  # services run in it: paths they are given must not be relative to it
    state_dir.mkdir(parents=True, exist_ok=True)
    running = read_state(state_dir, name)
    if running:
        return running
    stale = _recorded_state(state_dir, name)
    if stale:  # died without a stop: its scratch data is nobody's now
        _remove_scratch(stale.details)
    if persistent and name not in PERSISTENT_SERVICES:
        raise ServiceError(f"{name} cannot keep its data across restarts; persistent services: {PERSISTENT_SERVICES}")
    data = data_dir(state_dir, name) if persistent else None
    if data:
        data.mkdir(parents=True, exist_ok=True)
    log_path = state_dir / f"{name}.log"
    for _attempt in range(3 if port is None else 1):  # a free port can be taken between choosing and binding it
        chosen = port or free_port()
        endpoint = _endpoint(name, chosen)
        log_start = log_path.stat().st_size if log_path.exists() else 0
        details: dict[str, Any] = {}
        if name == "kafka":
            command, details = _prepare_kafka(state_dir, chosen, data, log_path, ports)
        else:
            command = _COMMANDS[name](chosen, data)
        with open(log_path, "ab") as log:
            extra_env = _ENVIRONMENTS.get(name, lambda _port, _data: {})(chosen, data)
            workdir = NODE_SERVICES_DIR / "node_modules" / "kinesis-local" if name == "kinesis-mock" else state_dir
            process = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True, cwd=workdir, env={**os.environ, **extra_env},
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and process.poll() is None:
            if _ready(name, endpoint, log_path, log_start):
                service = RunningService(name, process.pid, chosen, endpoint, str(log_path), persistent, details)
                _state_file(state_dir, name).write_text(json.dumps(asdict(service)))
                return service
            time.sleep(0.1)
        _terminate(process.pid)
        _remove_scratch(details)
    reason = _failure_reason(log_path, log_start)
    raise ServiceError(f"{name} did not become ready{': ' + reason if reason else ''}; see {log_path}")


def _failure_reason(log_path: Path, since: int) -> str:
    """The line of the service's log (from ``since``) that says why it stopped, if one does."""
    try:
        with open(log_path, "rb") as log:
            log.seek(since)
            lines = log.read().decode(errors="replace").splitlines()
    except OSError:
        return ""
    if any("Address already in use" in line for line in lines):
        listener = re.findall(r"Unable to start acceptor for (\w+)", "\n".join(lines))  # kafka names it
        return "a port is taken" + (f" (its {listener[-1]} listener's)" if listener else "")
    errors = [line for line in lines if not line.lstrip().startswith("at ")  # not a stack trace's frames
              and ("ERROR" in line or "Exception" in line or line.startswith("Error"))]
    return errors[-1].strip()[-300:] if errors else ""


def _remove_scratch(details: dict[str, Any]) -> None:
    if details.get("scratch"):
        shutil.rmtree(details["scratch"], ignore_errors=True)


def restart_service(name: str, state_dir: Path, down_for: float = 0.0, timeout: float = 60.0) -> RunningService:
    """Stop a running service and start it again on the same port(s) (with its data, when persistent)."""
    running = read_state(state_dir, name)
    if running is None:
        raise ServiceError(f"{name} is not running in {state_dir}")
    stop_service(name, state_dir)
    time.sleep(down_for)
    deadline = time.monotonic() + timeout
    while True:  # the old process's socket may linger a moment
        try:
            return start_service(name, state_dir, timeout=timeout, persistent=running.persistent, port=running.port,
                                 ports=_listener_ports(running))
        except ServiceError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def _listener_ports(service: RunningService) -> dict[str, int] | None:
    listeners = service.details.get("listeners")
    return {name: int(where.rsplit(":", 1)[1]) for name, where in listeners.items()} if listeners else None


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
    """Stop the service (True if it was running) and remove its scratch data (kafka without persistence)."""
    recorded = _recorded_state(state_dir, name)
    _state_file(state_dir, name).unlink(missing_ok=True)
    if recorded is None:
        return False
    running = _alive(recorded.pid)
    if running:
        _terminate(recorded.pid)
    _remove_scratch(recorded.details)
    return running


def settings_env(services: dict[str, RunningService]) -> dict[str, str]:
    """The PINPIPE_* variables that point the pipeline at the given running services."""
    env: dict[str, str] = {}
    if "kafka" in services:
        env["PINPIPE_KAFKA__BOOTSTRAP_SERVERS"] = services["kafka"].endpoint
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
    stopped = [name for name in (*SERVICES, *OPTIONAL_SERVICES, "kinesis-mock")
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


def serve_s3(port: int, data: Path) -> None:
    """moto S3 on 127.0.0.1:``port`` whose objects outlive a restart (journal in ``data``)."""
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
    from werkzeug.serving import make_server

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
