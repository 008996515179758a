"""The job on a real Spark standalone cluster whose workers cannot see the repository or its venv.

`./spark-submit.sh` with `PINPIPE_SPARK_MASTER=spark://...` ships the packed environment
(`make package`); the tables it lands hold every record once with its cleaned values (the same
oracle as the local-mode tests), with executors on both workers; a worker SIGKILLed mid-run and a
driver SIGKILLed mid-batch are survived (the executors read Kafka and Kinesis); and no secret leaks
into a command line or a log.
"""

from __future__ import annotations

import json
import os
import sys
import re
import subprocess
import threading
import time
import uuid
from collections import Counter
from pathlib import Path

import pytest

from emulator.generator import Dirt, generate
from emulator import kinesis_target
from emulator.kafka_target import produce
from pinpipe.deploy import build_package, unpacked_environment
from pinpipe.settings import Settings
from pinpipe.wiring import kafka_target_args, kinesis_target_args
from schemas.contracts import TABLES
from tests.helpers import assert_each_batch_committed_once, assert_lake_matches
from tests.helpers.airflow import AIRFLOW_PYTHON, AIRFLOW_VENV, MISSING, airflow_env, command_exists
from tests.helpers.spark_cluster import ROOT, SPARK_HOME, StandaloneCluster, cluster_unavailable_reason, shared_cluster
from tests.helpers.spark_cluster import submit_env as cluster_submit_env

pytestmark = [pytest.mark.integration, pytest.mark.timeout(1800)]

POSTS = 300
SENTINEL = f"sentinel-secret-{uuid.uuid4().hex}"
RUN_TIMEOUT = 900  # 2 shared cores: a cluster run can take minutes while other Spark jobs run
KINESIS_LOCAL = {"PINPIPE_KINESIS__ACCESS_KEY": "local", "PINPIPE_KINESIS__SECRET_KEY": "local",
                 "PINPIPE_KINESIS__INITIAL_POSITION": "trim_horizon", "PINPIPE_KINESIS__SHARD_FETCH_INTERVAL": "0ms"}


@pytest.fixture(scope="session")
def cluster(tmp_path_factory):
    reason = cluster_unavailable_reason()
    if reason:
        pytest.skip(reason)
    return shared_cluster(tmp_path_factory)


@pytest.fixture(scope="session")
def package():
    return build_package()


def submit_env(lake: Path, prefix: str, broker: str, master: str, **extra: str) -> dict[str, str]:
    # A secret the job never needs here: it must not show up anywhere.
    return cluster_submit_env(lake, prefix, broker, master, PINPIPE_S3__SECRET_KEY=SENTINEL, **extra)


def spark_submit(args: list[str], env: dict[str, str], cwd: Path, log: Path) -> subprocess.Popen:
    return subprocess.Popen([str(ROOT / "spark-submit.sh"), *args], env=env, cwd=cwd, stdout=log.open("wb"),
                            stderr=subprocess.STDOUT, start_new_session=True)


def run_to_the_end(args: list[str], env: dict[str, str], cwd: Path, log: Path) -> str:
    process = spark_submit(args, env, cwd, log)
    try:
        code = process.wait(timeout=RUN_TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, 9)
        raise
    output = log.read_text(errors="replace")
    assert code == 0, f"spark-submit.sh {' '.join(args)} exited {code}:\n{_tail(output)}"
    return output


def _tail(output: str) -> str:
    lines = [line for line in output.splitlines() if not line.startswith("\tat ")]
    return "\n".join(lines[-60:])


def app_id(output: str) -> str:
    match = re.search(r"Connected to Spark cluster with app ID (app-\S+)", output)
    assert match, "the driver log names no standalone application: it did not run on the cluster"
    return match.group(1)


def assert_landed_once(lake: Path, prefix: str, messages) -> None:
    """Every record once, its newest cleaned values, the misrouted ones in quarantine: the local tests' oracle."""
    assert_lake_matches(Settings(prefix=prefix, lake=str(lake)), messages, extra_bad=0)


def data_files_added(table: Path) -> tuple[int, int]:
    """(files, bytes) of the data and deletion-vector files the table's Delta log ever added."""
    files = size = 0
    for commit in sorted((table / "_delta_log").glob("*.json")):
        for action in map(json.loads, commit.read_text().splitlines()):
            if "add" in action:
                dv = action["add"].get("deletionVector") or {}
                files, size = files + 1, size + action["add"]["size"] + dv.get("sizeInBytes", 0)
    return files, size


def assert_executors_wrote_the_data_files(lake: Path, events: Path) -> None:
    """Every byte of the tables' data files was written by a task on an executor; the driver wrote only the log.

    In client mode no task runs in the driver, so a data file the driver wrote would have to come from
    the job's Python (as delta-rs's did): then the executors' written bytes would fall short of the files'.
    """
    tasks = [event for log in events.iterdir() for event in map(json.loads, log.read_text().splitlines())
             if event.get("Event") == "SparkListenerTaskEnd"]
    assert tasks, f"no task in the event log under {events}"
    assert {t["Task Info"]["Executor ID"] for t in tasks} - {"driver"}, "no task ran on an executor"
    assert all(t["Task Info"]["Executor ID"] != "driver" for t in tasks), "a task ran in the driver"
    written = sum(((t.get("Task Metrics") or {}).get("Output Metrics") or {}).get("Bytes Written", 0) for t in tasks)
    files, size = map(sum, zip(*(data_files_added(lake / table) for table in TABLES)))
    print(f"{files} data files ({size} bytes) in the tables; the executors' tasks wrote {written} bytes "
          f"in {len(tasks)} tasks")
    assert files > 0 and written >= size, (written, size)
    for table in TABLES:  # and the driver's Delta log holds no data file of its own
        assert not [p for p in (lake / table / "_delta_log").iterdir() if p.suffix == ".parquet"
                    and ".checkpoint." not in p.name], table


class ProcessWatch:
    """Samples every process's command line while a run goes on, looking for a value."""

    def __init__(self, needle: str):
        self.needle, self.hits, self._stop = needle.encode(), [], threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self):
        while not self._stop.is_set():
            for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
                try:
                    if self.needle in cmdline.read_bytes():
                        self.hits.append(cmdline.read_bytes().replace(b"\0", b" ")[:300])
                except OSError:
                    pass
            time.sleep(0.5)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


@pytest.fixture(scope="module")
def topics(kafka_broker):
    """(prefix, messages): POSTS posts (with the seed's dirt, some misrouted into quarantine) on fresh topics."""
    prefix = f"c{uuid.uuid4().hex[:10]}"
    settings = Settings(prefix=prefix, kafka={"bootstrap_servers": kafka_broker})
    messages = list(generate(POSTS, 11, Dirt(misrouted_rate=0.05)))
    produce(messages, **kafka_target_args(settings), progress=False)
    return prefix, messages


@pytest.fixture(scope="module")
def stream_run(cluster: StandaloneCluster, topics, kafka_broker, package, tmp_path_factory):
    """``spark-submit.sh stream --available-now --archive`` on the cluster: (env, work dir, lake, output, secret hits)."""
    (prefix, _), work = topics, tmp_path_factory.mktemp("cluster-stream")
    lake, events = work / "lake", work / "events"
    events.mkdir()
    env = submit_env(lake, prefix, kafka_broker, cluster.url)
    # Spark's event log of the stream run: which process ran each task and how many bytes it wrote.
    stream_env = {**env, "SPARK_SUBMIT_OPTS_EXTRA": env["SPARK_SUBMIT_OPTS_EXTRA"]
                  + f" --conf spark.eventLog.enabled=true --conf spark.eventLog.dir=file://{events}"
                  # one plain JSON file (Spark 4 rolls the log into a folder and compresses it by default)
                  " --conf spark.eventLog.rolling.enabled=false --conf spark.eventLog.compress=false"}
    with ProcessWatch(SENTINEL) as watch:
        output = run_to_the_end(["stream", "--available-now", "--sources", "kafka", "--archive"], stream_env,
                                work, work / "stream.log")
    return env, work, lake, output, watch.hits


def assert_ran_on_both_workers(cluster: StandaloneCluster, output: str) -> None:
    """The master ran the application, with executors on both workers that ran tasks."""
    state = cluster.state()
    apps = {app["id"]: app for app in state["activeapps"] + state["completedapps"]}
    application = app_id(output)
    assert application in apps, f"{application} is not in the master's applications: {sorted(apps)}"
    for worker in cluster.workers:
        logs = list(worker.work_dir.glob(f"{application}/*/stderr"))
        assert logs, f"no executor of {application} on worker {worker.index}"
        assert any(re.search(r"Running task \d+\.\d+ in stage", log.read_text(errors="replace")) for log in logs), \
            f"the executor of {application} on worker {worker.index} ran no task"


def assert_no_secret_leaked(cluster: StandaloneCluster, hits: list, output: str) -> None:
    """No secret in a command line, the launcher's output, or any log of the cluster."""
    assert hits == [], hits[:3]
    assert SENTINEL not in output
    for log in cluster.base.rglob("*"):
        if log.is_file() and (log.name in ("stderr", "stdout") or log.suffix == ".log"):
            assert SENTINEL.encode() not in log.read_bytes(), f"the secret is in {log}"


def test_a_stream_on_the_cluster_lands_every_record_once(cluster: StandaloneCluster, topics, stream_run):
    (prefix, messages), (_, work, lake, output, hits) = topics, stream_run
    assert "query kafka writes its tables with delta-spark (MERGE on the executors): a cluster master" in output
    assert_landed_once(lake, prefix, messages)
    assert_executors_wrote_the_data_files(lake, work / "events")
    assert_ran_on_both_workers(cluster, output)
    assert_no_secret_leaked(cluster, hits, output)


def test_airflow_runs_the_daily_batch_on_the_cluster_over_the_streams_archive(cluster: StandaloneCluster, topics,
                                                                             package, stream_run):
    """`airflow dags test pinpipe_batch`: the batch path, then the queries and maintenance, each through
    SparkSubmitOperator on the cluster with the packed environment, over the archive the cluster's stream
    wrote, into a lake of its own. The secret comes from an Airflow Connection and reaches no log."""
    if not AIRFLOW_PYTHON.exists():
        pytest.skip(MISSING)
    unpacked_environment(package)  # the client-mode driver's Python, beside the package the DAG names
    (prefix, messages), (_, work, lake, _, _) = topics, stream_run
    batch_lake, home = work / "batch-lake", work / "airflow-home"
    home.mkdir()
    settings = {"PINPIPE_PREFIX": prefix, "PINPIPE_LAKE": str(batch_lake), "PINPIPE_ARCHIVE": str(lake / "raw"),
                "PINPIPE_SHUFFLE_PARTITIONS": "2"}  # not the cluster's 200 on a 2-core test cluster
    env = airflow_env(
        home,
        SPARK_HOME=str(SPARK_HOME), JAVA_HOME=os.environ.get("JAVA_HOME", ""),
        AIRFLOW_CONN_SPARK_DEFAULT=json.dumps({"conn_type": "spark", "host": "spark://127.0.0.1",
                                               "port": cluster.master_port, "extra": {"deploy-mode": "client"}}),
        # The secret: in a Connection, handed to spark-submit's environment only.
        AIRFLOW_CONN_PINPIPE_SECRETS=json.dumps({"conn_type": "generic",
                                                 "extra": {"PINPIPE_S3__SECRET_KEY": SENTINEL}}),
        AIRFLOW_VAR_PINPIPE_RUNNER="spark-submit",
        AIRFLOW_VAR_PINPIPE_ENV=json.dumps(settings),
        AIRFLOW_VAR_PINPIPE_PACKAGE_DIR=str(package.environment.parent),
        AIRFLOW_VAR_PINPIPE_EXECUTOR_MEMORY="512m", AIRFLOW_VAR_PINPIPE_DRIVER_MEMORY="1g",
    )
    env["PATH"] = f"{SPARK_HOME / 'bin'}:{env['PATH']}"  # spark-submit of the cluster's Spark, as on a worker
    migrate = subprocess.run([str(AIRFLOW_VENV / "bin" / "airflow"), "db", "migrate"], env=env, capture_output=True,
                             text=True, timeout=600)
    assert migrate.returncode == 0, migrate.stderr[-3000:]
    command = [str(AIRFLOW_VENV / "bin" / "airflow"), "dags", "test", "pinpipe_batch", "2026-11-25"]
    # A command another branch adds is skipped until it is merged (patterns are matched with fullmatch).
    missing = [name for name in ("query", "maintain") if not command_exists(name)]
    if missing:
        command += ["--mark-success-pattern", "(" + "|".join(missing) + ")_.*"]
    with ProcessWatch(SENTINEL) as watch:
        result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=1500, cwd=work)
    output = result.stdout + result.stderr
    (work / "airflow.log").write_text(output)
    assert result.returncode == 0, _tail(output)
    states = dict(re.findall(r"task_id=(\w+).*?(?:state|final_state)=(\w+)", output))
    assert re.search(r"Spark-Submit cmd: .*spark-submit.*--master spark://127\.0\.0\.1:\d+", output), _tail(output)
    for task in ("batch_spark_submit", "query_spark_submit", "maintain_spark_submit"):
        assert states.get(task, "success") == "success", states
    assert_landed_once(batch_lake, prefix, messages)
    assert_ran_on_both_workers(cluster, output)  # the first application of the run: the batch
    assert_no_secret_leaked(cluster, watch.hits, output)
    for log in home.rglob("*"):
        if log.is_file():
            assert SENTINEL.encode() not in log.read_bytes(), f"the secret is in {log}"


def test_a_worker_killed_mid_run_is_survived_without_loss_or_duplicates(cluster: StandaloneCluster, topics,
                                                                        kafka_broker, kinesis_endpoint, tmp_path):
    """Kafka and Kinesis in one run; the executors read both (Kinesis: each task its shard, claiming where it
    stopped), and a worker SIGKILLed while they read costs neither a record nor a duplicate."""
    (prefix, messages), lake = topics, tmp_path / "lake"
    via_kinesis = list(generate(POSTS // 2, 12, Dirt(misrouted_rate=0.05), first_ind=100_001))
    kinesis = {"PINPIPE_KINESIS__ENDPOINT_URL": kinesis_endpoint, **KINESIS_LOCAL}
    settings = Settings(prefix=prefix, kinesis={"endpoint_url": kinesis_endpoint, "access_key": "local",
                                                "secret_key": "local"})
    kinesis_target.produce(via_kinesis, **kinesis_target_args(settings), shards=2, progress=False)
    # Several micro-batches of each source: the kill after the first commit lands in the middle of the run.
    env = submit_env(lake, prefix, kafka_broker, cluster.url, PINPIPE_MAX_OFFSETS_PER_TRIGGER="240", **kinesis)
    process = spark_submit(["stream", "--available-now"], env, tmp_path, tmp_path / "run.log")
    victim = cluster.workers[1]
    try:
        deadline = time.monotonic() + RUN_TIMEOUT
        # Kill once the first micro-batch has committed (the job is mid-run, executors on both workers).
        while not (lake / "pin" / "_delta_log" / "00000000000000000000.json").exists():
            assert process.poll() is None, f"the run ended before the kill:\n{_tail((tmp_path / 'run.log').read_text())}"
            assert time.monotonic() < deadline, "no micro-batch committed in time"
            time.sleep(0.5)
        victim.kill()
        code = process.wait(timeout=RUN_TIMEOUT)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, 9)
        if victim.process.poll() is not None:  # the next test gets two workers again
            cluster.start_worker(victim, cores=1, memory="1g")
            cluster.wait_for_workers(2)
    output = (tmp_path / "run.log").read_text(errors="replace")
    assert code == 0, _tail(output)
    assert re.search(r"(Lost executor|Executor lost|Removed executor|is now (LOST|EXITED|DEAD))", output), \
        "the driver never noticed the lost worker: the kill came too late"
    assert_landed_once(lake, prefix, messages + via_kinesis)
    assert_each_batch_committed_once(str(lake))  # the batch the kill interrupted was not committed twice
    # GetRecords ran in the executors: their logs name each shard's read; the driver's does not. Each record
    # was read once: a batch's shard read afresh by one task (a retry reads again to its claim), and the
    # fresh reads add up to what was produced (the tables' MERGE on keys would hide a record read twice).
    reads = fresh_reads(cluster, [app_id(output)])
    assert len({shard for _, shard in reads}) == 6, reads  # 3 streams x 2 shards, each read by a task
    assert sum(reads.values()) == len(via_kinesis), reads
    assert "GetRecords calls" not in output  # and none in the driver


def executor_logs(cluster: StandaloneCluster, application: str) -> str:
    return "\n".join(log.read_text(errors="replace") for worker in cluster.workers
                     for log in worker.work_dir.glob(f"{application}/*/stderr"))


def fresh_reads(cluster: StandaloneCluster, applications: list[str]) -> dict[tuple[str, str], int]:
    """{(batch, stream/shard): records} of the Kinesis reads the applications' executors logged as their own
    (the claim was theirs); a (batch, shard) read afresh twice fails."""
    reads: dict[tuple[str, str], int] = {}
    for application in applications:
        for batch, shard, records in re.findall(r"kinesis batch (\d+) (\S+/shardId-\d+): (\d+) records in \d+ "
                                                r"GetRecords calls", executor_logs(cluster, application)):
            assert (batch, shard) not in reads, f"batch {batch} of {shard} was read afresh twice"
            reads[(batch, shard)] = int(records)
    return reads


def wait_until_gone(application: str, timeout: float = 120) -> None:
    """Until no process on this machine runs for the application (its executors exit after the driver)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        running = []
        for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
            try:
                running += [cmdline] if application.encode() in cmdline.read_bytes() else []
            except OSError:
                pass
        if not running:
            return
        time.sleep(0.5)
    raise AssertionError(f"executors of {application} still run {timeout}s after its driver was killed")


def test_the_driver_killed_mid_batch_is_survived_without_loss_or_duplicates(cluster: StandaloneCluster, kafka_broker,
                                                                            kinesis_endpoint, tmp_path):
    """SIGKILL the driver while a Kinesis batch is in flight (its tasks have claimed where they stopped, the
    batch has not committed); the next run replays that batch exactly from the claims: nothing lost or doubled."""
    prefix, lake = f"d{uuid.uuid4().hex[:10]}", tmp_path / "lake"
    via_kinesis = list(generate(60, 13, Dirt(misrouted_rate=0.05)))
    settings = Settings(prefix=prefix, lake=str(lake), kinesis={"endpoint_url": kinesis_endpoint,
                                                                "access_key": "local", "secret_key": "local"})
    kinesis_target.produce(via_kinesis, **kinesis_target_args(settings), shards=2, progress=False)
    env = submit_env(lake, prefix, kafka_broker, cluster.url, PINPIPE_KINESIS__ENDPOINT_URL=kinesis_endpoint,
                     **KINESIS_LOCAL)
    args = ["stream", "--available-now", "--sources", "kinesis"]
    checkpoint, batch = Path(settings.checkpoint_path("kinesis")), 0
    claims = checkpoint / "pinpipe" / "claims-kinesis"
    # The first run takes 60 of the 180 records a batch; the rerun, the default cap: the rest in one batch.
    process = spark_submit(args, {**env, "PINPIPE_MAX_OFFSETS_PER_TRIGGER": "60"}, tmp_path, tmp_path / "killed.log")
    try:
        deadline = time.monotonic() + RUN_TIMEOUT
        # Mid-batch: the batch's tasks have claimed (read, and handing rows to Spark), the batch not committed.
        while not (list((claims / str(batch)).glob("*/*.json")) and not (checkpoint / "commits" / str(batch)).exists()):
            assert process.poll() is None, f"the run ended before the kill:\n{_tail((tmp_path / 'killed.log').read_text())}"
            assert time.monotonic() < deadline, "no batch was caught in flight"
            if (checkpoint / "commits" / str(batch)).exists():
                batch += 1  # missed it: the next one
            time.sleep(0.05)
        os.killpg(process.pid, 9)  # the launcher, the driver's JVM and its Python: the whole driver
        process.wait(timeout=60)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, 9)
    killed = app_id((tmp_path / "killed.log").read_text(errors="replace"))
    wait_until_gone(killed)  # no executor of the killed run stores a claim after this
    claimed = {f"{path.parent.name}/{path.stem}": json.loads(path.read_text())
               for path in (claims / str(batch)).glob("*/*.json")}
    assert not (checkpoint / "commits" / str(batch)).exists(), f"batch {batch} committed before the kill"
    output = run_to_the_end(args, env, tmp_path, tmp_path / "rerun.log")
    assert_landed_once(lake, prefix, via_kinesis)
    assert_each_batch_committed_once(str(lake))
    # The rerun's executors read each shard the killed batch had claimed exactly to its claim, no further,
    # and the batch's other shards afresh.
    rerun = app_id(output)
    logs = executor_logs(cluster, rerun)
    # Each batch's shard was read by one task in all: the sink fills its cache before its four table jobs
    # start, so no two executors compute the same partition of a batch.
    tasks = Counter(re.findall(r"kinesis batch (\d+ \S+/shardId-\d+): \d+ records (?:in|read again)", logs))
    assert tasks and set(tasks.values()) == {1}, tasks
    replayed = dict(re.findall(rf"kinesis batch {batch} (\S+/shardId-\d+): (\d+) records read again to its claim",
                               logs))
    fresh = {shard for read_batch, shard in fresh_reads(cluster, [rerun]) if read_batch == str(batch)}
    planned = json.loads((checkpoint / "offsets" / str(batch)).read_text().splitlines()[-1])["read"]
    assert {shard: int(replayed.get(shard, -1)) for shard in claimed} == \
        {shard: claim["rows"] for shard, claim in claimed.items()}, (replayed, claimed)
    assert not fresh & set(claimed) and fresh | set(claimed) == set(planned), (fresh, claimed, planned)
    # Over both runs every record was read afresh once.
    assert sum(fresh_reads(cluster, [killed, rerun]).values()) == len(via_kinesis)
    print(f"killed the driver in batch {batch}: {len(claimed)} of its {len(planned)} shards claimed; the rerun "
          f"read those again exactly, the others afresh")


MSK_IAM_CLASSES = ("software.amazon.msk.auth.iam.IAMLoginModule",
                   "software.amazon.msk.auth.iam.IAMClientCallbackHandler")
CLASS_CHECK = """
import sys
from pyspark.sql import SparkSession
spark = SparkSession.builder.getOrCreate()
for name in sys.argv[1:]:
    # The driver: as Kafka's client loads it (the context class loader holds the job's jars).
    print("driver", spark._jvm.org.apache.spark.util.Utils.classForName(name, True, False).getName())
    # The executors (a standalone master runs no task in a client-mode driver): one task per worker.
    query = f"reflect('org.apache.spark.util.Utils', 'classForName', '{name}', true, false)"
    for row in spark.range(4).repartition(4).selectExpr(query + " AS loaded").distinct().collect():
        print("executors", row.loaded)
spark.stop()
"""


def test_msk_iam_classes_load_on_the_driver_and_on_the_executors(cluster: StandaloneCluster, tmp_path):
    """No AWS account here: what can be shown is that the launcher ships aws-msk-iam-auth where Kafka's
    client looks for the login module and the callback handler that PINPIPE_KAFKA__AUTH__MECHANISM=msk_iam names."""
    from pinpipe.deploy import job_options
    from tests.helpers.spark_cluster import SPARK_HOME

    script = tmp_path / "classes.py"
    script.write_text(CLASS_CHECK)
    env = {**os.environ, "PYSPARK_PYTHON": sys.executable, "PYSPARK_DRIVER_PYTHON": sys.executable}
    done = subprocess.run([str(SPARK_HOME / "bin" / "spark-submit"), "--master", cluster.url,
                           "--conf", "spark.executor.memory=512m", "--conf", "spark.ui.enabled=false",
                           *job_options(local_jars=True), str(script), *MSK_IAM_CLASSES],
                          env=env, capture_output=True, text=True, timeout=RUN_TIMEOUT)
    assert done.returncode == 0, _tail(done.stdout + done.stderr)
    assert app_id(done.stdout + done.stderr)
    for name in MSK_IAM_CLASSES:
        assert f"driver {name}" in done.stdout, done.stdout
        assert f"executors class {name}" in done.stdout, done.stdout
