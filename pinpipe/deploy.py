"""Ship pinpipe to a Spark cluster: the package it runs from, and the run specs of each runner.

A cluster never sees this repository or its ``.venv`` (its nodes have their own Spark install), so
the job ships itself:

- a **wheel** of the project (``python -m build``), and
- a **packed environment** (``venv-pack``): a venv with that wheel and every dependency but
  pyspark (the cluster's Spark provides pyspark and py4j), shipped with ``spark.archives`` /
  ``--archives ENV#environment``; executors (and a cluster-mode driver) run
  ``./environment/bin/python``.

Both are built by ``build_package`` (``make package``) into ``dist/``, cached by a fingerprint of
the sources and ``pyproject.toml`` and rebuilt when either changes.

The run specs (Databricks runs/submit payload, EMR add-steps step, EMR Serverless StartJobRun)
carry the job's settings (``PINPIPE_*``) except secrets: a secret never appears in a spec, a
command line or a log. It reaches the job from the cluster itself (IAM role / instance profile for
AWS, a Databricks secret scope, an Airflow connection).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping

from pinpipe.jvm import line_pom, spark_jars, spark_packages
from pinpipe.runtimes import DATABRICKS_18_LTS, EMR_8, EMR_RELEASES, ManagedRuntime
from pinpipe.spark import DELTA_CONFS, DRIVER_JAVA_OPTIONS, spark_confs

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SOURCE_PACKAGES = ("pinpipe", "schemas", "streaming", "batch", "emulator")
ENV_ARCHIVE_NAME = "pinpipe-env.tar.gz"
ENV_ALIAS = "environment"  # the folder the archive is unpacked into, in each container's working directory
CLUSTER_PYTHON = f"./{ENV_ALIAS}/bin/python"
ENTRY_NAME = "spark_entry.py"

# Settings that are secrets: never written into a spec, a command line or a log.
SECRET_SETTING = re.compile(r"(SECRET|PASSWORD|TOKEN|ACCESS_KEY|CREDENTIAL|CLIENT_CONFIG|SOURCE_OPTIONS|SASL)", re.IGNORECASE)
# Settings that only steer where and how the job is launched, not the job itself.
LAUNCH_ONLY = {"PINPIPE_RUNNER", "PINPIPE_SPARK_MASTER", "PINPIPE_DRIVER_MEMORY", "PINPIPE_VENV"}


# The Kafka TLS files (PEM) the job's driver reads: its Python clients open them, and the Java client
# gets their contents inline (streaming.kafka_auth), so executors need no copy. A driver in a cluster's
# container gets them with --files (spark.files), in its working directory, and the settings name the copies.
TLS_FILE_SETTINGS = tuple(f"PINPIPE_KAFKA__AUTH__{name}" for name in ("CA_LOCATION", "CERT_LOCATION", "KEY_LOCATION"))
# Paths a Databricks driver opens as files: Unity Catalog volumes, DBFS and workspace files (FUSE mounts).
DATABRICKS_FILE_ROOTS = ("/Volumes/", "/dbfs/", "/Workspace/")


class DeployError(RuntimeError):
    """A packaging or spec problem, in one line the CLI prints."""


# ---------------------------------------------------------------- packaging


@dataclass(frozen=True)
class Package:
    wheel: Path
    environment: Path  # the venv-pack archive
    entry: Path        # the spark-submit application file (a .py spark-submit can start)
    fingerprint: str


def source_files(root: Path = PROJECT_ROOT) -> list[Path]:
    files = [root / "pyproject.toml"]
    for package in SOURCE_PACKAGES:
        files += sorted(p for p in (root / package).rglob("*.py") if "__pycache__" not in p.parts)
    return files


def source_fingerprint(root: Path = PROJECT_ROOT) -> str:
    digest = hashlib.sha256()
    for path in source_files(root):
        digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def _run(command: list[str], what: str, **kwargs) -> None:
    result = subprocess.run(command, capture_output=True, text=True, **kwargs)
    if result.returncode != 0:
        raise DeployError(f"{what} failed ({shlex.join(command)}):\n{(result.stderr or result.stdout)[-3000:]}")


def _base_python() -> str:
    # The interpreter the venvs here were made from; a packed venv links to it by path, so the
    # cluster's nodes need the same Python at the same path (venv-pack's --python-prefix can move it).
    return getattr(sys, "_base_executable", None) or sys.executable


def _clean_env() -> dict[str, str]:
    # Without PYTHONPATH: a checkout on it (with its egg-info) would make pip skip the wheel.
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}


def _install_into_pack_venv(root: Path, venv: Path, wheel: Path, log) -> None:
    """A venv with the wheel and its dependencies; the dependency layer is reused while they are unchanged."""
    import tomllib

    dependencies = tomllib.loads((root / "pyproject.toml").read_text())["project"]["dependencies"]
    deps_key = hashlib.sha256(json.dumps([_base_python(), *dependencies]).encode()).hexdigest()[:16]
    stamp = venv / ".pinpipe-deps"
    python = str(venv / "bin" / "python")
    pip = [python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    if not (stamp.exists() and stamp.read_text() == deps_key):
        log("installing the dependencies into a fresh venv ...")
        shutil.rmtree(venv, ignore_errors=True)
        _run([_base_python(), "-m", "venv", str(venv)], "python -m venv", env=_clean_env())
        _run([*pip, *dependencies], "pip install of the dependencies", env=_clean_env())
        stamp.write_text(deps_key)
    log(f"installing {wheel.name} ...")
    _run([*pip, "--no-deps", "--force-reinstall", str(wheel)], "pip install of the wheel", env=_clean_env())
    # The environment must run the job on its own (with the cluster's pyspark): check from outside
    # any checkout that the project's packages are in it and its dependencies import.
    check = ("import importlib.util as u, deltalake, confluent_kafka, pyarrow, pandas, boto3, pydantic_settings, typer; "
             f"missing = [p for p in {SOURCE_PACKAGES!r} if u.find_spec(p) is None]; "
             "assert not missing, f'not in the environment: {missing}'")
    _run([python, "-c", check],
         "the packed environment's import check", env=_clean_env(), cwd="/")


def build_package(root: Path = PROJECT_ROOT, dist: Path | None = None, force: bool = False,
                  log=lambda message: print(message, file=sys.stderr)) -> Package:
    """The wheel and the packed environment of the current sources; reused while they are unchanged."""
    dist = Path(dist or root / "dist")
    dist.mkdir(parents=True, exist_ok=True)
    fingerprint = source_fingerprint(root)
    stamp = dist / "package.json"
    if not force and stamp.exists():
        recorded = json.loads(stamp.read_text())
        package = Package(Path(recorded["wheel"]), Path(recorded["environment"]), Path(recorded["entry"]),
                          recorded["fingerprint"])
        if package.fingerprint == fingerprint and all(p.exists() for p in (package.wheel, package.environment, package.entry)):
            log(f"package up to date ({fingerprint}): {package.environment}")
            return package

    log(f"building the wheel of {root} ...")
    shutil.rmtree(root / "build", ignore_errors=True)  # setuptools would also pack modules deleted since
    with tempfile.TemporaryDirectory(prefix="pinpipe-wheel-") as out:
        # No isolation: the build backend (setuptools) is already in this venv, and no index is needed.
        _run([sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", out, str(root)], "python -m build",
             env=_clean_env())
        built = list(Path(out).glob("*.whl"))
        if len(built) != 1:
            raise DeployError(f"python -m build made {len(built)} wheels, expected 1")
        for old in dist.glob("pinpipe-*.whl"):
            old.unlink()
        wheel = dist / built[0].name
        shutil.move(built[0], wheel)

    venv = dist / "pack-venv"
    _install_into_pack_venv(root, venv, wheel, log)
    environment = dist / ENV_ARCHIVE_NAME
    log(f"packing the environment into {environment} ...")
    import venv_pack

    partial = environment.with_suffix(".partial")
    venv_pack.pack(prefix=str(venv), output=str(partial), format="tar.gz", force=True, verbose=False)
    partial.replace(environment)
    entry = dist / ENTRY_NAME
    shutil.copyfile(root / "pinpipe" / ENTRY_NAME, entry)

    package = Package(wheel, environment, entry, fingerprint)
    stamp.write_text(json.dumps({"wheel": str(wheel), "environment": str(environment), "entry": str(entry),
                                 "fingerprint": fingerprint}, indent=2))
    log(f"package built ({fingerprint}): {wheel.name}, {environment.name} "
        f"({environment.stat().st_size / 2**20:.0f} MiB)")
    return package


# ---------------------------------------------------------------- settings


def split_settings(env: Mapping[str, str] = os.environ) -> tuple[dict[str, str], list[str]]:
    """(the job's non-secret PINPIPE_* settings, the names of the secret ones) from an environment."""
    plain, secret = {}, []
    for name in sorted(env):
        if not name.startswith("PINPIPE_") or name in LAUNCH_ONLY or name.startswith("PINPIPE_DATABRICKS_") \
                or name.startswith("PINPIPE_EMR_"):
            continue
        if SECRET_SETTING.search(name):
            secret.append(name)
        else:
            plain[name] = env[name]
    return plain, secret


def warn_unshipped(secret_names: Iterable[str], how: str) -> None:
    names = list(secret_names)
    if names:
        print(f"pinpipe deploy: not shipped (secrets): {', '.join(names)}; {how}", file=sys.stderr)


def tls_files(plain: Mapping[str, str]) -> dict[str, str]:
    """The Kafka TLS file settings that are set: {setting name: path or URI}."""
    return {name: value for name, value in plain.items() if name.upper() in TLS_FILE_SETTINGS and value}


def ship_tls_files(plain: Mapping[str, str], where: str = "local") -> tuple[list[str], dict[str, str]]:
    """(what ``--files`` ships, the settings with each TLS file named by its shipped copy ``./<name>``).

    ``where``: ``local`` for a spark-submit here (files on this machine, made absolute), ``uri`` for a
    spark-submit on the cluster (EMR: the files must be where it reads them, e.g. ``s3://``).
    """
    files, shipped, names = [], dict(plain), {}
    for setting, value in tls_files(plain).items():
        if where == "uri" and "://" not in value:
            raise DeployError(f"{setting}={value!r}: the cluster reads the file it ships, so upload it (e.g. to "
                              "s3://bucket/prefix/, readable by the job's role only) and give its URI")
        if where == "local":
            if not os.path.isfile(value):
                raise DeployError(f"{setting}={value!r}: no such file to ship with the job")
            value = os.path.abspath(value)
        name = value.rstrip("/").rsplit("/", 1)[-1]
        if names.setdefault(name, setting) != setting:
            raise DeployError(f"{names[name]} and {setting} have the same file name {name!r}: "
                              "the shipped copies would collide in the working directory")
        files.append(value)
        shipped[setting] = f"./{name}"
    return files, shipped


def check_databricks_tls_files(plain: Mapping[str, str]) -> None:
    """A Databricks driver opens the TLS files on the cluster: they must be in a volume (or DBFS, workspace files)."""
    for setting, value in tls_files(plain).items():
        if not value.startswith(DATABRICKS_FILE_ROOTS):
            raise DeployError(f"{setting}={value!r}: the job cluster's driver opens this file; put it in a Unity "
                              "Catalog volume readable by the job only (/Volumes/...) and give that path")


# ---------------------------------------------------------------- spark-submit (standalone, YARN)


def cluster_python_confs(env_archive: str, cluster_mode: bool) -> list[str]:
    """spark-submit options that ship the packed environment and make Spark's Python processes use it."""
    options = ["--archives", f"{env_archive}#{ENV_ALIAS}",
               "--conf", f"spark.pyspark.python={CLUSTER_PYTHON}",
               "--conf", f"spark.executorEnv.PYSPARK_PYTHON={CLUSTER_PYTHON}"]
    if cluster_mode:  # the driver runs in a container of the cluster too (YARN cluster mode, EMR)
        options += ["--conf", f"spark.pyspark.driver.python={CLUSTER_PYTHON}",
                    "--conf", f"spark.yarn.appMasterEnv.PYSPARK_PYTHON={CLUSTER_PYTHON}"]
    return options


def settings_confs(plain: Mapping[str, str]) -> list[str]:
    """Non-secret settings for a driver and executors that run in the cluster's containers."""
    options: list[str] = []
    for name, value in plain.items():
        options += ["--conf", f"spark.yarn.appMasterEnv.{name}={value}", "--conf", f"spark.executorEnv.{name}={value}"]
    return options


PYTHON_API_JARS = ("delta-spark_",)  # jars with a Python package inside (delta-spark's `delta`)


def jvm_package_args(local_jars: bool, spark_line: str | None = None) -> list[str]:
    """The job's JVM packages: the files ``make install`` resolved (``--jars``, shipped from here),
    or their Maven coordinates for a cluster that resolves them itself (``--packages``, EMR), of the
    cluster's Spark line (default: the installed pyspark's).

    delta-spark's jar also carries its Python API (``delta.tables``). spark-submit puts ``--packages``
    jars on a Python job's path itself; shipped ``--jars`` need ``--py-files`` for that, or the driver
    cannot import ``delta`` and the job would fall back to delta-rs.
    """
    if not local_jars:
        return ["--packages", ",".join(spark_packages(line_pom(spark_line) if spark_line else None))]
    jars = spark_jars()
    with_python = [jar for jar in jars if Path(jar).name.startswith(PYTHON_API_JARS)]
    return ["--jars", ",".join(jars), *(["--py-files", ",".join(with_python)] if with_python else [])]


def job_options(local_jars: bool, spark_line: str | None = None) -> list[str]:
    """What every spark-submit of the job carries: the driver's JVM options, its JVM packages, its confs."""
    options = ["--conf", f"spark.driver.extraJavaOptions={DRIVER_JAVA_OPTIONS}", *jvm_package_args(local_jars, spark_line)]
    for key, value in spark_confs().items():
        options += ["--conf", f"{key}={value}"]
    return options


def spark_submit_args(command: str, args: list[str], env_archive: str, entry: str, master: str = "yarn",
                      cluster_mode: bool = True, plain_settings: Mapping[str, str] | None = None,
                      extra: list[str] = (), local_jars: bool = False, files_from: str = "local",
                      spark_line: str | None = None) -> list[str]:
    """The spark-submit command line of a run on a cluster (without the binary).

    In cluster mode the Kafka TLS files travel with ``--files`` (see :func:`ship_tls_files`; ``files_from``);
    a client-mode driver runs here and reads them where they are.
    """
    options = ["--master", master, "--deploy-mode", "cluster" if cluster_mode else "client",
               "--name", f"pinpipe-{command}", *job_options(local_jars, spark_line)]
    options += cluster_python_confs(env_archive, cluster_mode)
    if cluster_mode and plain_settings:
        files, plain_settings = ship_tls_files(plain_settings, files_from)
        options += ["--files", ",".join(files)] if files else []
        options += settings_confs(plain_settings)
    return [*options, *extra, entry, command, *args]


def unpacked_environment(package: Package) -> Path:
    """The packed environment unpacked next to it (once per build): a client-mode driver's Python.

    Spark starts the driver's own Python workers (a Python data source's planner) with the same
    relative ``./environment/bin/python`` as the executors', from the driver's working directory;
    so a client-mode driver runs in the folder that holds this ``environment``.
    """
    folder = package.environment.parent / ENV_ALIAS
    stamp = folder / ".pinpipe-fingerprint"
    if stamp.exists() and stamp.read_text() == package.fingerprint:
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    partial = folder.with_name(ENV_ALIAS + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    _run(["tar", "-xzf", str(package.environment), "-C", str(partial)], "unpacking the environment")
    (partial / ".pinpipe-fingerprint").write_text(package.fingerprint)
    partial.rename(folder)
    return folder


def _absolute_settings(env: dict[str, str], cwd: Path) -> None:
    # The driver runs in another folder: relative paths must keep meaning what they meant here.
    for name in ("PINPIPE_LAKE", "PINPIPE_ARCHIVE", *TLS_FILE_SETTINGS):
        value = env.get(name)
        if value and "://" not in value and not os.path.isabs(value):
            env[name] = str((cwd / value).resolve())
    env.setdefault("PINPIPE_LAKE", str((cwd / "lake").resolve()))
    env.setdefault("PINPIPE_LOCAL_STATE", str((cwd / ".pinpipe" / "local").resolve()))
    if (cwd / ".env").exists():  # the settings' .env file is read from the working directory
        from dotenv import dotenv_values

        for name, value in dotenv_values(cwd / ".env").items():
            if name.startswith("PINPIPE_") and value is not None:
                env.setdefault(name, value)


def submit_to_cluster(command: str, args: list[str], master: str, deploy_mode: str = "client",
                      spark_submit: str = "spark-submit", extra: list[str] = (),
                      env: Mapping[str, str] = os.environ, execute: bool = True) -> list[str]:
    """spark-submit to a standalone or YARN master, shipping the packed environment.

    Client mode: the driver runs here, in the unpacked environment, with the settings in its
    environment (never on the command line). Cluster mode (YARN): the driver runs in a container;
    non-secret settings go as ``spark.yarn.appMasterEnv.*`` confs, secrets stay with the cluster.
    """
    if deploy_mode not in ("client", "cluster"):
        raise DeployError(f"deploy mode must be client or cluster, got {deploy_mode!r}")
    if deploy_mode == "cluster" and master.startswith("spark://"):
        raise DeployError("a standalone master runs Python applications in client mode only (Spark's limit)")
    package = build_package()
    child_env = dict(env)
    cwd = Path.cwd()
    plain, secret = split_settings(child_env)
    if deploy_mode == "client":
        driver_env = unpacked_environment(package)
        _absolute_settings(child_env, cwd)
        child_env["PYSPARK_DRIVER_PYTHON"] = str(driver_env / "bin" / "python")
        child_env.pop("PYTHONPATH", None)  # the driver imports the shipped build, not a checkout
        cwd = driver_env.parent
        settings_conf = ["--conf", f"spark.pyspark.driver.python={driver_env / 'bin' / 'python'}"]
    else:
        warn_unshipped(secret, "give them to the cluster (IAM role / instance profile, YARN's environment)")
        settings_conf = []
    argv = [spark_submit, *spark_submit_args(command, args, str(package.environment), str(package.entry),
                                             master=master, cluster_mode=deploy_mode == "cluster",
                                             plain_settings=plain, extra=[*settings_conf, *extra],
                                             local_jars=True)]
    print(f"pinpipe deploy: {shlex.join(argv)}  (in {cwd})", file=sys.stderr, flush=True)
    if execute:
        os.chdir(cwd)
        os.execvpe(argv[0], argv, child_env)
    return argv


# ---------------------------------------------------------------- EMR on EC2 and EMR Serverless


def emr_runtime(env: Mapping[str, str] = os.environ) -> ManagedRuntime:
    """The EMR release the run targets (``PINPIPE_EMR_RELEASE``, default emr-spark-8.0.0): its Spark line
    picks the ``--packages``. A release the support matrix has not tested is refused."""
    release = env.get("PINPIPE_EMR_RELEASE") or EMR_8.key
    if release not in EMR_RELEASES:
        raise DeployError(f"PINPIPE_EMR_RELEASE={release!r} is not a tested release: use one of "
                          f"{', '.join(sorted(EMR_RELEASES))} (deploy/runtimes/README.md)")
    return EMR_RELEASES[release]


def check_emr_release(release_label: str, where: str, env: Mapping[str, str] = os.environ) -> None:
    """Refuse to submit to a cluster or application whose release is not the one the spec was built for."""
    expected = emr_runtime(env).key
    if release_label != expected:
        raise DeployError(f"{where} runs {release_label}, the spec is for {expected} (Spark {emr_runtime(env).spark}): "
                          f"set PINPIPE_EMR_RELEASE={release_label} if the matrix has it, or use an {expected} "
                          "cluster/application")


def emr_step(command: str, args: list[str], code_uri: str, env: Mapping[str, str] = os.environ,
             action_on_failure: str = "CONTINUE") -> dict:
    """An EMR ``add-steps`` step: spark-submit in YARN cluster mode with the packed environment from S3,
    and the JVM packages of the release's Spark line (:func:`emr_runtime`).

    ``code_uri``: the S3 prefix holding ``pinpipe-env.tar.gz`` and ``spark_entry.py`` (``upload``).
    """
    plain, secret = split_settings(env)
    warn_unshipped(secret, "give AWS access through the cluster's instance profile (EMR_EC2_DefaultRole), "
                           "other secrets through the cluster's spark-env configuration")
    code_uri = code_uri.rstrip("/")
    submit = spark_submit_args(command, args, f"{code_uri}/{ENV_ARCHIVE_NAME}", f"{code_uri}/{ENTRY_NAME}",
                               plain_settings=plain, files_from="uri",  # its spark-submit runs on the cluster
                               spark_line=emr_runtime(env).spark_line)
    return {"Name": f"pinpipe-{command}", "ActionOnFailure": action_on_failure,
            "HadoopJarStep": {"Jar": "command-runner.jar", "Args": ["spark-submit", *submit]}}


def emr_serverless_job_run(command: str, args: list[str], code_uri: str, application_id: str,
                           execution_role_arn: str, env: Mapping[str, str] = os.environ,
                           log_uri: str | None = None) -> dict:
    """An EMR Serverless ``StartJobRun`` request running the packed environment."""
    plain, secret = split_settings(env)
    warn_unshipped(secret, "give AWS access through the job's execution role, other secrets through "
                           "the application's runtime configuration")
    code_uri = code_uri.rstrip("/")
    files, plain = ship_tls_files(plain, "uri")
    confs = {
        "spark.archives": f"{code_uri}/{ENV_ARCHIVE_NAME}#{ENV_ALIAS}",
        **({"spark.files": ",".join(files)} if files else {}),
        "spark.emr-serverless.driverEnv.PYSPARK_DRIVER_PYTHON": CLUSTER_PYTHON,
        "spark.emr-serverless.driverEnv.PYSPARK_PYTHON": CLUSTER_PYTHON,
        "spark.executorEnv.PYSPARK_PYTHON": CLUSTER_PYTHON,
        "spark.jars.packages": ",".join(spark_packages(line_pom(emr_runtime(env).spark_line))),
        **spark_confs(),
    }
    for name, value in plain.items():
        # sparkSubmitParameters is split on whitespace, without shell quoting.
        if re.search(r"\s", value):
            raise DeployError(f"{name}: a value with whitespace cannot travel in sparkSubmitParameters; "
                              "set it in the application's runtime configuration instead")
        confs[f"spark.emr-serverless.driverEnv.{name}"] = value
        confs[f"spark.executorEnv.{name}"] = value
    request = {
        "applicationId": application_id,
        "executionRoleArn": execution_role_arn,
        "name": f"pinpipe-{command}",
        "jobDriver": {"sparkSubmit": {
            "entryPoint": f"{code_uri}/{ENTRY_NAME}",
            "entryPointArguments": [command, *args],
            "sparkSubmitParameters": " ".join(f"--conf {k}={v}" for k, v in confs.items()),
        }},
    }
    # A value with spaces cannot go in sparkSubmitParameters: spark-defaults takes it as it is.
    overrides: dict = {"applicationConfiguration": [{
        "classification": "spark-defaults", "properties": {"spark.driver.extraJavaOptions": DRIVER_JAVA_OPTIONS}}]}
    if log_uri:
        overrides["monitoringConfiguration"] = {"s3MonitoringConfiguration": {"logUri": log_uri}}
    request["configurationOverrides"] = overrides
    return request


def upload(package: Package, code_uri: str, s3_client=None) -> None:
    """Copy the packed environment and the entry file to ``code_uri`` (s3://bucket/prefix)."""
    match = re.fullmatch(r"s3://([^/]+)/?(.*)", code_uri)
    if not match:
        raise DeployError(f"code URI must be s3://bucket/prefix, got {code_uri!r}")
    import boto3

    s3 = s3_client or boto3.client("s3")
    bucket, prefix = match.group(1), match.group(2).strip("/")
    for path in (package.environment, package.entry, package.wheel):
        s3.upload_file(str(path), bucket, f"{prefix}/{path.name}" if prefix else path.name)


# ---------------------------------------------------------------- Databricks


def databricks_env_vars(env: Mapping[str, str], secret_scope: str) -> dict[str, str]:
    """The job cluster's environment: non-secret settings as values, secrets as secret-scope references.

    A secret's key in the scope is its setting name in lower case (``pinpipe_s3__secret_key``);
    Databricks resolves ``{{secrets/scope/key}}`` on the cluster, so the value never is in the spec.
    """
    plain, secret = split_settings(env)
    check_databricks_tls_files(plain)
    return {**plain, **{name: f"{{{{secrets/{secret_scope}/{name.lower()}}}}}" for name in secret}}


# Maven packages of the job a Databricks runtime already has (a second Delta would clash with its own).
DATABRICKS_BUILT_IN = ("org.apache.spark:spark-sql-kafka", "io.delta:", "com.fasterxml.jackson")


def databricks_run(command: str, args: list[str], wheel_uri: str, env: Mapping[str, str] = os.environ,
                   secret_scope: str = "pinpipe", spark_version: str = DATABRICKS_18_LTS.key,
                   node_type_id: str = "i3.xlarge", num_workers: int = 2) -> dict:
    """A Jobs API runs/submit payload: a python_wheel_task on a job cluster that carries the settings.

    ``wheel_uri``: where the wheel was uploaded (``/Volumes/...`` or ``dbfs:/...``): the library is
    this build, not whatever a stranger publishes under the same name on PyPI.
    """
    return {
        "run_name": f"pinpipe-{command}",
        "tasks": [{
            "task_key": f"pinpipe_{command}",
            "python_wheel_task": {"package_name": "pinpipe", "entry_point": "pinpipe",
                                  "parameters": [command, *args]},
            # Databricks has Spark's Kafka source and Delta built in; the rest of the job's JVM packages come from Maven.
            "libraries": [{"whl": wheel_uri}, *({"maven": {"coordinates": package}}
                                                for package in spark_packages(line_pom(DATABRICKS_18_LTS.spark_line))
                                                if not package.startswith(DATABRICKS_BUILT_IN))],
            "new_cluster": {
                "spark_version": spark_version,
                "node_type_id": node_type_id,
                "num_workers": num_workers,
                "spark_conf": {k: v for k, v in spark_confs().items() if k not in DELTA_CONFS},
                "spark_env_vars": databricks_env_vars(env, secret_scope),
            },
        }],
    }


# ---------------------------------------------------------------- command line


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m pinpipe.deploy", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="what", required=True)
    pack = sub.add_parser("package", help="build (or reuse) the wheel and the packed environment in dist/")
    pack.add_argument("--dist", type=Path, default=None)
    pack.add_argument("--force", action="store_true")
    pack.add_argument("--unpack", action="store_true", help="also unpack the environment for a client-mode driver")
    pack.add_argument("--print", choices=("environment", "wheel", "entry"), help="print one path on stdout")
    submit = sub.add_parser("spark-submit", help="spark-submit to a standalone or YARN master with the packed environment")
    submit.add_argument("--master", required=True)
    submit.add_argument("--deploy-mode", default="client", choices=("client", "cluster"))
    submit.add_argument("--spark-submit", default="spark-submit", help="the spark-submit binary")
    submit.add_argument("command", choices=("stream", "batch"))
    submit.add_argument("args", nargs=argparse.REMAINDER)
    sub.add_parser("local-options", help="spark-submit options of a local run, one per line (spark-submit.sh)")
    for name in ("emr-step", "emr-serverless", "databricks"):
        spec = sub.add_parser(name, help=f"print the {name} spec of a run (JSON); --submit sends it")
        spec.add_argument("command", choices=("stream", "batch"))
        spec.add_argument("args", nargs=argparse.REMAINDER)
        spec.add_argument("--submit", action="store_true")
    options = parser.parse_args(argv)
    env = os.environ
    try:
        if options.what == "package":
            package = build_package(dist=options.dist, force=options.force)
            if options.unpack:
                print(f"unpacked for a client-mode driver: {unpacked_environment(package)}", file=sys.stderr)
            if options.print:
                print(getattr(package, options.print))
            return 0
        if options.what == "local-options":
            print("\n".join(job_options(local_jars=True)))
            return 0
        args = [a for a in options.args if a != "--"]
        if options.what == "spark-submit":
            extra = shlex.split(env.get("SPARK_SUBMIT_OPTS_EXTRA", ""))
            submit_to_cluster(options.command, args, options.master, options.deploy_mode, options.spark_submit,
                              extra, env)
            return 0
        if options.what == "databricks":
            wheel_uri = _required(env, "PINPIPE_DATABRICKS_WHEEL", "the wheel's location on Databricks (/Volumes/... or dbfs:/...)")
            _require_shared_locations(env, options.what)
            spec = databricks_run(options.command, args, wheel_uri, env,
                                  secret_scope=env.get("PINPIPE_DATABRICKS_SECRET_SCOPE", "pinpipe"),
                                  spark_version=env.get("PINPIPE_DATABRICKS_SPARK_VERSION", DATABRICKS_18_LTS.key),
                                  node_type_id=env.get("PINPIPE_DATABRICKS_NODE_TYPE", "i3.xlarge"),
                                  num_workers=int(env.get("PINPIPE_DATABRICKS_WORKERS", "2")))
            if options.submit:
                from databricks.sdk import WorkspaceClient
                from databricks.sdk.service.jobs import SubmitTask

                run = WorkspaceClient().jobs.submit(run_name=spec["run_name"],
                                                    tasks=[SubmitTask.from_dict(t) for t in spec["tasks"]])
                print(f"submitted run {run.run_id}", file=sys.stderr)
        else:
            code_uri = _required(env, "PINPIPE_EMR_CODE_URI", "the S3 prefix for the packed environment (s3://bucket/prefix)")
            _require_shared_locations(env, options.what)
            if options.what == "emr-step":
                spec = emr_step(options.command, args, code_uri, env)
            else:
                spec = emr_serverless_job_run(
                    options.command, args, code_uri,
                    _required(env, "PINPIPE_EMR_APPLICATION_ID", "the EMR Serverless application id"),
                    _required(env, "PINPIPE_EMR_EXECUTION_ROLE_ARN", "the job's execution role ARN"), env,
                    log_uri=env.get("PINPIPE_EMR_LOG_URI"))
            if options.submit:
                import boto3

                # The target's release first: a spec built for another Spark line must not run.
                if options.what == "emr-step":
                    cluster = _required(env, "PINPIPE_EMR_CLUSTER_ID", "the EMR cluster id (j-...)")
                    emr = boto3.client("emr")
                    check_emr_release(emr.describe_cluster(ClusterId=cluster)["Cluster"]["ReleaseLabel"],
                                      f"cluster {cluster}", env)
                else:
                    serverless = boto3.client("emr-serverless")
                    application = serverless.get_application(applicationId=spec["applicationId"])["application"]
                    check_emr_release(application["releaseLabel"], f"application {spec['applicationId']}", env)
                upload(build_package(), code_uri)
                if options.what == "emr-step":
                    answer = emr.add_job_flow_steps(JobFlowId=cluster, Steps=[spec])
                    print(f"added step {answer['StepIds'][0]} to {cluster}", file=sys.stderr)
                else:
                    answer = serverless.start_job_run(**spec)
                    print(f"started job run {answer['jobRunId']}", file=sys.stderr)
        print(json.dumps(spec, indent=2))
        return 0
    except DeployError as error:
        print(f"pinpipe deploy: {error}", file=sys.stderr)
        return 2


def _require_shared_locations(env: Mapping[str, str], target: str) -> None:
    """A cluster run needs a lake every node sees (the job refuses anything else at start: say it now)."""
    from pinpipe.lake_checks import node_local_locations

    lake = _required(env, "PINPIPE_LAKE", f"the tables' location every node of the {target} run sees "
                                          "(s3://bucket/lake, /Volumes/..., abfss://...)")
    for problem in node_local_locations(lake, env.get("PINPIPE_ARCHIVE")):
        raise DeployError(f"{problem} is a relative path or a file: URI: each node of the {target} run "
                          "would see a different folder; use a shared location (s3://..., /Volumes/...)")


def _required(env: Mapping[str, str], name: str, meaning: str) -> str:
    value = env.get(name)
    if not value:
        raise DeployError(f"{name} is not set: {meaning}")
    return value


if __name__ == "__main__":
    sys.exit(main())
