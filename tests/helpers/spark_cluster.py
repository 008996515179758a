"""A Spark standalone cluster on 127.0.0.1 whose workers cannot see the repository.

A master and N workers, each its own JVM. Each worker runs from its own copy of the pyspark
package folder (Spark's distribution) outside the repository, inside a mount namespace where a
tmpfs hides the checkout and the venv's project (``unshare --mount``; needs root), as on a real
cluster: a job only runs there if it ships its code and its dependencies.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import pyspark

from pinpipe.deploy import ENV_ALIAS
from pinpipe.local import free_port

ROOT = Path(__file__).resolve().parents[2]
SPARK_HOME = Path(pyspark.__file__).resolve().parent


def hidden_paths() -> list[Path]:
    """The checkout, the project the venv was installed from, and what PYTHONPATH adds."""
    candidates = [ROOT, Path(sys.prefix).resolve().parent]
    candidates += [Path(p).resolve() for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    kept: list[Path] = []
    for path in sorted(set(candidates), key=lambda p: len(p.parts)):
        if path.is_dir() and path != Path("/") and not any(path.is_relative_to(k) for k in kept):
            kept.append(path)
    return kept


def cluster_unavailable_reason() -> str | None:
    if os.geteuid() != 0:
        return "the workers hide the repository with `unshare --mount` + a tmpfs, which needs root"
    if not shutil.which("unshare") or not shutil.which("java"):
        return "unshare (util-linux) and java are needed for the standalone cluster"
    return None


@dataclass
class Worker:
    index: int
    spark_home: Path
    work_dir: Path
    log: Path
    process: subprocess.Popen | None = None

    def kill(self) -> None:
        """SIGKILL the worker and its executors (its process group): a node lost."""
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)

    @property
    def local_dir(self) -> Path:
        return self.work_dir.parent / "local"

    def executor_logs(self) -> list[Path]:
        return sorted(self.work_dir.glob("app-*/*/stderr"))


@dataclass
class StandaloneCluster:
    base: Path
    master_port: int
    web_port: int
    master: subprocess.Popen | None = None
    workers: list[Worker] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"spark://127.0.0.1:{self.master_port}"

    def state(self) -> dict:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.web_port}/json/", timeout=10) as response:
            return json.load(response)

    def alive_workers(self) -> list[dict]:
        return [w for w in self.state().get("workers", []) if w["state"] == "ALIVE"]

    def wait_for_workers(self, count: int, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if len(self.alive_workers()) >= count:
                    return
            except (OSError, ValueError):  # not up yet: no answer, or (seen) an empty one while it starts
                pass
            for worker in self.workers:
                if worker.process and worker.process.poll() is not None:
                    raise RuntimeError(f"worker {worker.index} exited: {worker.log.read_text()[-3000:]}")
            time.sleep(1)
        raise TimeoutError(f"{count} workers did not register in {timeout}s: {self.state()}")

    def start_worker(self, worker: Worker, cores: int = 1, memory: str = "1g") -> None:
        mounts = " && ".join(f"mount -t tmpfs -o size=1m none {p}" for p in hidden_paths())
        command = (f"{mounts} && exec {worker.spark_home}/bin/spark-class org.apache.spark.deploy.worker.Worker "
                   f"{self.url} --host 127.0.0.1 --cores {cores} --memory {memory} "
                   f"--work-dir {worker.work_dir} --webui-port 0")
        env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "SPARK_HOME": str(worker.spark_home),
               "SPARK_LOCAL_IP": "127.0.0.1", "SPARK_NO_DAEMONIZE": "1", "HOME": str(worker.work_dir.parent),
               # Executors' scratch (fetched files, shuffle) inside the cluster's folder, not /tmp.
               "SPARK_LOCAL_DIRS": str(worker.local_dir),
               # Their temporary copies of fetched archives too (Spark's createTempDir: java.io.tmpdir).
               "JAVA_TOOL_OPTIONS": f"-Djava.io.tmpdir={worker.local_dir}"}
        if "JAVA_HOME" in os.environ:
            env["JAVA_HOME"] = os.environ["JAVA_HOME"]
        worker.process = subprocess.Popen(
            ["unshare", "--mount", "--propagation", "private", "sh", "-c", command],
            stdout=worker.log.open("ab"), stderr=subprocess.STDOUT, env=env, cwd=worker.work_dir,
            start_new_session=True)

    def stop(self) -> None:
        for process in [w.process for w in self.workers] + [self.master]:
            if process and process.poll() is None:
                try:
                    os.killpg(process.pid, signal.SIGTERM)
                    process.wait(timeout=20)
                except (ProcessLookupError, subprocess.TimeoutExpired):
                    os.killpg(process.pid, signal.SIGKILL)
        self.remove_unpacked_environments()

    def remove_unpacked_environments(self) -> None:
        """Each executor unpacks the shipped environment (~700 MB); keep the logs, free the disk."""
        for worker in self.workers:
            for unpacked in worker.work_dir.glob(f"app-*/*/{ENV_ALIAS}"):
                shutil.rmtree(unpacked, ignore_errors=True)
            shutil.rmtree(worker.local_dir, ignore_errors=True)


def start_cluster(base: Path, workers: int = 2, cores: int = 1, memory: str = "1g") -> StandaloneCluster:
    base.mkdir(parents=True, exist_ok=True)
    cluster = StandaloneCluster(base, free_port(), free_port())
    env = {**os.environ, "SPARK_HOME": str(SPARK_HOME), "SPARK_LOCAL_IP": "127.0.0.1",
           "SPARK_NO_DAEMONIZE": "1"}
    cluster.master = subprocess.Popen(
        [str(SPARK_HOME / "bin" / "spark-class"), "org.apache.spark.deploy.master.Master", "--host", "127.0.0.1",
         "--port", str(cluster.master_port), "--webui-port", str(cluster.web_port)],
        stdout=(base / "master.log").open("ab"), stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        for index in range(workers):
            home = base / f"worker-{index}"
            spark_home = home / "spark"
            home.mkdir(parents=True, exist_ok=True)
            if not spark_home.exists():
                # Its own Spark distribution outside the repository (hard links: cheap, same bytes).
                subprocess.run(["cp", "-al", str(SPARK_HOME), str(spark_home)], check=True)
            (home / "work").mkdir(parents=True, exist_ok=True)
            worker = Worker(index, spark_home, home / "work", home / "worker.log")
            worker.local_dir.mkdir(exist_ok=True)
            cluster.workers.append(worker)
            cluster.start_worker(worker, cores, memory)
        cluster.wait_for_workers(workers)
    except BaseException:
        cluster.stop()
        raise
    return cluster


def submit_env(lake: Path, prefix: str, broker: str, master: str, **extra: str) -> dict[str, str]:
    """The environment of a ``spark-submit.sh`` run on this machine's test cluster: the job's settings only
    (no PINPIPE_* of the caller's), small executors, and the few shuffle partitions 2 cores want."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PINPIPE_")}
    env.update({
        "PINPIPE_PREFIX": prefix, "PINPIPE_LAKE": str(lake), "PINPIPE_SPARK_MASTER": master,
        "PINPIPE_KAFKA__BOOTSTRAP_SERVERS": broker,
        "PINPIPE_VENV": sys.prefix, "PINPIPE_DRIVER_MEMORY": "1g",
        # The cluster's default (200) would be 200 tiny tasks a shuffle on this 2-core test cluster.
        "PINPIPE_SHUFFLE_PARTITIONS": "2",
        "SPARK_SUBMIT_OPTS_EXTRA": "--conf spark.executor.memory=512m --conf spark.ui.enabled=false",
    })
    env.update(extra)
    return env


_shared: StandaloneCluster | None = None


def shared_cluster(tmp_path_factory) -> StandaloneCluster:
    """One cluster per test session, whichever test module asks first; stopped at exit."""
    global _shared
    if _shared is None:
        import atexit

        _shared = start_cluster(tmp_path_factory.mktemp("spark-cluster"), workers=2, cores=1, memory="1g")
        atexit.register(_shared.stop)
    return _shared
