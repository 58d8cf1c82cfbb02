"""Crash safety with real processes: kill -9 at random moments, re-run, count at the server.

Invariants 4 and 5: nobody receives a message twice, and at the end every
recipient is in exactly one final state, with counts that add up.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from campaign_tool.audit import verify_chain
from campaign_tool.report import summarise
from tests.conftest import MakeCampaign, audit_entries, default_rows, run_campaign, smtp_tables
from tests.smtp_server import SmtpServer

pytestmark = pytest.mark.slow


def _start(config: Path) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "campaign_tool", "send", str(config),
                             "--yes"], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=dict(os.environ))


def _final_states(log: Path) -> dict[str, str]:
    """Each pseudonym's last recorded state (what a re-run would believe)."""
    states: dict[str, str] = {}
    for line in log.read_text(encoding="utf-8").splitlines():
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            continue
        if entry.get("ev") in ("sending", "delivered", "unknown", "failed"):
            states[entry["rcpt"]] = "unknown" if entry["ev"] == "sending" else entry["ev"]
    return states


def test_kill_9_at_random_moments_never_sends_anyone_twice(
        make_campaign: MakeCampaign, smtp_server: SmtpServer) -> None:
    rows = default_rows(600)
    # About 40 messages a second, so that each run is killed part-way through.
    smtp_server.handler.data_delay = 0.05
    folder = make_campaign(rows=rows, **smtp_tables(smtp_server, concurrency=2))
    log = folder.root / "test-campaign.audit.jsonl"
    rng = random.Random(20261122)
    kills_mid_send = 0
    for _ in range(24):
        before = len(smtp_server.handler.received)
        process = _start(folder.config)
        time.sleep(rng.uniform(0.6, 1.8))
        process.send_signal(signal.SIGKILL)
        process.communicate(timeout=30)
        if len(smtp_server.handler.received) > before:
            kills_mid_send += 1
        deliveries = smtp_server.handler.deliveries()
        assert max(deliveries.values(), default=0) <= 1, "a recipient was mailed twice"
    assert kills_mid_send >= 20, "the kills should land while messages are being sent"

    finish = run_campaign("send", str(folder.config), "--yes")
    assert finish.returncode in (0, 1), finish.stderr  # 1 when some outcomes are unknown
    deliveries = smtp_server.handler.deliveries()
    assert max(deliveries.values()) == 1
    assert set(deliveries) <= {row["email"] for row in rows}

    # Every recipient is in exactly one final state, and the log agrees with the server.
    assert verify_chain(log)[1] == []
    states = _final_states(log)
    assert len(states) == len(rows)
    assert set(states.values()) <= {"delivered", "unknown"}
    report = summarise(log)
    print("crash test:", dict(report.states), "kills mid-send:", kills_mid_send,
          "recovered tails:", sum(e["ev"] == "recovered" for e in audit_entries(folder)))
    assert report.states["delivered"] + report.states["unknown"] == len(rows)
    assert report.states["pending"] == 0
    delivered_at_server = sum(deliveries.values())
    # Delivered ones arrived exactly once; unknown ones at most once.
    assert report.states["delivered"] <= delivered_at_server <= len(rows)
    assert "= 600 of 600 rows" in finish.stdout


def test_sigterm_stops_gracefully_and_a_rerun_finishes(
        make_campaign: MakeCampaign, smtp_server: SmtpServer) -> None:
    smtp_server.handler.data_delay = 0.02
    folder = make_campaign(rows=default_rows(200), **smtp_tables(smtp_server, concurrency=2))
    process = _start(folder.config)
    deadline = time.monotonic() + 30
    while len(smtp_server.handler.received) < 20 and time.monotonic() < deadline:
        time.sleep(0.02)
    process.send_signal(signal.SIGTERM)
    stdout, stderr = process.communicate(timeout=30)
    assert process.returncode == 3, stderr
    assert "HALTED: interrupted (SIGTERM)" in stdout
    assert "Traceback" not in stderr
    entries = audit_entries(folder)
    assert entries[-1]["ev"] == "run-end" and entries[-1]["pending"] > 0
    assert verify_chain(folder.root / "test-campaign.audit.jsonl") == (len(entries), [], False)
    # In-flight transactions finished: nothing was left unknown.
    assert entries[-1]["unknown"] == 0
    sent = len(smtp_server.handler.received)
    assert entries[-1]["delivered"] == sent

    rerun = run_campaign("send", str(folder.config), "--yes")
    assert rerun.returncode == 0, rerun.stderr
    assert smtp_server.handler.deliveries() == {f"user{i}@example.test": 1
                                                for i in range(1, 201)}


def test_outage_mid_campaign_halts_and_a_rerun_resumes(
        make_campaign: MakeCampaign, smtp_server: SmtpServer) -> None:
    smtp_server.handler.data_delay = 0.01
    tables = smtp_tables(smtp_server, concurrency=2, messages_per_connection=5,
                         max_attempts=2)
    folder = make_campaign(rows=default_rows(120), **tables)
    process = _start(folder.config)
    deadline = time.monotonic() + 30
    while len(smtp_server.handler.received) < 15 and time.monotonic() < deadline:
        time.sleep(0.01)
    port = smtp_server.port
    smtp_server.stop()  # the server goes away mid-campaign
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 3, stdout + stderr
    assert "SMTP server unusable" in stdout
    received = list(smtp_server.handler.received)

    with SmtpServer(smtp_server.handler) as revived:
        tables["transport"]["port"] = revived.port
        config_text = folder.config.read_text(encoding="utf-8")
        folder.config.write_text(config_text.replace(f"port = {port}",
                                                     f"port = {revived.port}"),
                                 encoding="utf-8")
        rerun = run_campaign("send", str(folder.config), "--yes")
        assert rerun.returncode in (0, 1), rerun.stdout + rerun.stderr
    deliveries = smtp_server.handler.deliveries()
    assert max(deliveries.values()) == 1
    assert len(smtp_server.handler.received) > len(received)
    assert "= 120 of 120 rows" in rerun.stdout
