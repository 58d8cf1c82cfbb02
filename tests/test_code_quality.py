"""ruff and mypy --strict run with the tests, so one command keeps the code clean."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from tests.conftest import REPO


@pytest.mark.parametrize("command", [
    [sys.executable, "-m", "ruff", "check", "."],
    [sys.executable, "-m", "mypy"],
])
def test_code_is_clean(command: list[str]) -> None:
    if shutil.which(command[2]) is None and subprocess.run(
            [sys.executable, "-m", command[2], "--version"], capture_output=True,
            check=False).returncode != 0:
        pytest.fail(f"{command[2]} is not installed: pip install -e '.[test]'")
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, check=False,
                            timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
