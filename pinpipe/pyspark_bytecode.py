"""Add bytecode to the pyspark.zip (and py4j zip) that Spark's Python processes import pyspark from.

Spark puts ``$SPARK_HOME/python/lib/pyspark.zip`` first on the PYTHONPATH of every Python process
it starts (task workers, the planner process of each Python streaming source, data source lookups).
The wheel ships that zip with sources only, and Python never caches bytecode for a zip, so every
such process compiles ~1,300 modules before it does any work: about 0.7 s of CPU per process, paid
at every query start. Adding unchecked hash-based ``.pyc`` files next to the sources (what
``compileall`` would do for a folder) makes those imports ~3x faster. Sources stay in the zip, so
tracebacks still show code, and an interpreter of another version falls back to the sources.

Run once per install (``make install`` does): ``python -m pinpipe.pyspark_bytecode``. Idempotent.
"""

from __future__ import annotations

import importlib.util
import marshal
import os
import tempfile
import warnings
import zipfile
from pathlib import Path

UNCHECKED_HASH_PYC = 0b01  # PEP 552: hash-based, source not checked


def spark_python_zips() -> list[Path]:
    """pyspark.zip and py4j-*.zip of the installed pyspark."""
    import pyspark

    return sorted((Path(pyspark.__file__).parent / "python" / "lib").glob("*.zip"))


def has_bytecode(archive: Path) -> bool:
    with zipfile.ZipFile(archive) as zipped:
        return any(name.endswith(".pyc") for name in zipped.namelist())


def pyc_bytes(source: bytes, filename: str) -> bytes:
    with warnings.catch_warnings():  # pyspark's own SyntaxWarnings are not ours to print
        warnings.simplefilter("ignore")
        code = compile(source, filename, "exec", dont_inherit=True)
    return (importlib.util.MAGIC_NUMBER + UNCHECKED_HASH_PYC.to_bytes(4, "little")
            + importlib.util.source_hash(source) + marshal.dumps(code))


def add_bytecode(archive: Path) -> int:
    """Rewrite ``archive`` with a .pyc beside each .py (tests excepted); returns how many were added."""
    added = 0
    handle, temporary = tempfile.mkstemp(dir=archive.parent, suffix=".zip")
    os.close(handle)
    try:
        with zipfile.ZipFile(archive) as source, zipfile.ZipFile(temporary, "w", zipfile.ZIP_DEFLATED) as target:
            for entry in source.infolist():
                data = source.read(entry)
                target.writestr(entry, data)
                if entry.filename.endswith(".py") and "/tests/" not in entry.filename:
                    try:
                        compiled = pyc_bytes(data, entry.filename)
                    except SyntaxError:
                        continue  # left to the source, as before
                    target.writestr(zipfile.ZipInfo(entry.filename + "c", entry.date_time), compiled)
                    added += 1
        os.chmod(temporary, archive.stat().st_mode & 0o777)
        os.replace(temporary, archive)  # atomic: a process starting now sees the old or the new zip
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return added


def main() -> None:
    for archive in spark_python_zips():
        if has_bytecode(archive):
            print(f"{archive.name} already has bytecode")
            continue
        print(f"{archive.name}: added bytecode for {add_bytecode(archive)} modules")


if __name__ == "__main__":
    main()
