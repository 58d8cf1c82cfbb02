"""The benchmark harness itself keeps working (a smoke test, never a timing assert).

It needs Postfix's smtp-sink (Debian package ``postfix``) and mailmerge
(``pip install -e '.[bench]'``). ``.ci/run`` installs both and sets
CAMPAIGN_REQUIRE_BENCH=1, so in CI a missing tool fails the test; on a machine
without them it is skipped with the reason.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.slow


def _tools_missing() -> list[str]:
    missing = []
    if shutil.which("smtp-sink") is None and not Path("/usr/sbin/smtp-sink").exists():
        missing.append("smtp-sink (apt-get install postfix)")
    if shutil.which("mailmerge") is None:
        missing.append("mailmerge (pip install -e '.[bench]')")
    return missing


def test_quick_benchmark_prints_every_table() -> None:
    missing = _tools_missing()
    if missing:
        message = "benchmark tools missing: " + ", ".join(missing)
        if os.environ.get("CAMPAIGN_REQUIRE_BENCH"):
            pytest.fail(message)
        pytest.skip(message)
    result = subprocess.run([sys.executable, str(REPO / "benchmarks" / "bench.py"), "--quick"],
                            capture_output=True, text=True, timeout=600, check=False,
                            stdin=subprocess.DEVNULL)
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    assert "| 1,000 rows |" in out
    assert "| 0 ms | 8 | 300 |" in out and "| 10 ms | 32 | 300 |" in out
    assert "ours / mailmerge" in out and "Peak RSS of `campaign send`" in out
