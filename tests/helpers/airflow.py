"""Airflow, run by its own venv (it pulls pandas 3 and pyspark-client): where it is and how it is called."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from tests.helpers.spark_cluster import ROOT

AIRFLOW_VENV = Path(os.environ.get("PINPIPE_AIRFLOW_VENV", ROOT / ".venv-airflow"))
if not AIRFLOW_VENV.exists() and (Path(sys.prefix).parent / ".venv-airflow").exists():
    AIRFLOW_VENV = Path(sys.prefix).parent / ".venv-airflow"  # a worktree: the main checkout's Airflow venv
AIRFLOW_PYTHON = AIRFLOW_VENV / "bin" / "python"
DAGS = ROOT / "deploy" / "airflow" / "dags"
MISSING = "Airflow's own venv is missing: `make airflow-venv` creates it (`make test` does)"


def airflow_env(home: Path, **extra: str) -> dict[str, str]:
    return {"AIRFLOW_HOME": str(home), "PATH": f"{AIRFLOW_VENV / 'bin'}:/usr/local/bin:/usr/bin:/bin",
            "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS), "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "HOME": str(home), **extra}


def command_exists(name: str) -> bool:
    from pinpipe.cli import app

    return any((command.name or command.callback.__name__) == name for command in app.registered_commands)
