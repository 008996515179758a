"""pinpipe.pyspark_bytecode: a zip with sources only gets bytecode that Python imports from it."""

from __future__ import annotations

import subprocess
import sys
import zipfile

from pinpipe.pyspark_bytecode import add_bytecode, has_bytecode


def test_imports_come_from_the_added_bytecode_and_sources_stay(tmp_path):
    archive = tmp_path / "lib.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.writestr("pkg/__init__.py", "ANSWER = 42\n")
        zipped.writestr("pkg/tests/test_x.py", "x = 1\n")
    assert not has_bytecode(archive)

    assert add_bytecode(archive) == 1  # tests are left as sources
    assert has_bytecode(archive)
    assert set(zipfile.ZipFile(archive).namelist()) == {"pkg/__init__.py", "pkg/__init__.pyc", "pkg/tests/test_x.py"}
    imported = subprocess.run(
        [sys.executable, "-c", "import pkg; print(pkg.ANSWER, pkg.__file__.endswith('.pyc'))"],
        env={"PYTHONPATH": str(archive)}, capture_output=True, text=True, check=True,
    ).stdout.split()
    assert imported == ["42", "True"]
