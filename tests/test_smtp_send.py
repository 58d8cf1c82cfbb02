"""``campaign send`` over real SMTP (aiosmtpd on 127.0.0.1): one RCPT, faults, resume."""

from __future__ import annotations

import itertools
import re
import stat
from collections.abc import Callable
from typing import Any

import pytest
from click.testing import Result

from tests.conftest import (
    MakeCampaign,
    audit_entries,
    default_rows,
    parse,
    smtp_tables,
)
from tests.smtp_server import SmtpServer

Cli = Callable[..., Result]


def _summary(result: Result) -> dict[str, int]:
    match = re.search(r"Done in [\d.]+ s: (.*?) = (\d+) of (\d+) rows", result.output)
    assert match, result.output
    counts = {what: int(n.replace(",", "")) for n, what in
              re.findall(r"(\d[\d,]*) (\w+)", match.group(1))}
    assert int(match.group(2)) == int(match.group(3)) == sum(counts.values()), result.output
    return counts


def _send(cli: Cli, folder: Any, *flags: str) -> Result:
    return cli("send", folder.config, "--yes", *flags)


def test_every_transaction_has_one_rcpt_whose_address_is_the_to_header(
        make_campaign: MakeCampaign, cli: Cli, smtp_server: SmtpServer) -> None:
    folder = make_campaign(rows=default_rows(30), **smtp_tables(smtp_server))
    result = _send(cli, folder)
    assert result.exit_code == 0, result.output
    received = smtp_server.handler.received
    assert len(received) == 30
    for message in received:
        assert len(message.rcpt_tos) == 1
        assert message.mail_from == "news@sender.test"
        parsed = parse(message.data)
        assert [a.addr_spec for a in parsed["To"].addresses] == message.rcpt_tos
        assert "Cc" not in parsed and "Bcc" not in parsed
    assert smtp_server.handler.deliveries() == {f"user{i}@example.test": 1
                                                for i in range(1, 31)}
    assert _summary(result)["delivered"] == 30


def test_connections_are_reused_and_renewed_after_their_limit(
        make_campaign: MakeCampaign, cli: Cli, smtp_server: SmtpServer) -> None:
    folder = make_campaign(rows=default_rows(12),
                           **smtp_tables(smtp_server, concurrency=1, messages_per_connection=5))
    assert _send(cli, folder).exit_code == 0
    # One probe connection when the transport opens, then 12 messages / 5 per connection.
    assert smtp_server.handler.connections == 1 + 3


@pytest.mark.parametrize(("script", "attempts"), [
    (["rcpt:450", "rcpt:450"], 3),
    (["data:451"], 2),
    (["data:421"], 2),
    (["rcpt:close"], 2),
])
def test_transient_failure_is_retried_until_delivered(
        make_campaign: MakeCampaign, cli: Cli, smtp_server: SmtpServer,
        script: list[str], attempts: int) -> None:
    smtp_server.handler.script("user2@example.test", *script)
    folder = make_campaign(**smtp_tables(smtp_server))
    result = _send(cli, folder)
    assert result.exit_code == 0, result.output
    assert smtp_server.handler.deliveries()["user2@example.test"] == 1
    entries = [e for e in audit_entries(folder) if e.get("row") == 2]
    assert [e["ev"] for e in entries if e["ev"] in ("retry", "delivered")] == \
        ["retry"] * (attempts - 1) + ["delivered"]
    assert entries[-1]["attempt"] == attempts


@pytest.mark.parametrize("script", [["rcpt:550"], ["data:550"]])
def test_permanent_failure_is_recorded_with_code_and_not_retried(
        make_campaign: MakeCampaign, cli: Cli, smtp_server: SmtpServer,
        script: list[str]) -> None:
    smtp_server.handler.script("user3@example.test", *script)
    folder = make_campaign(**smtp_tables(smtp_server))
    result = _send(cli, folder)
    assert result.exit_code == 1
    assert _summary(result) == {"delivered": 4, "failed": 1, "duplicate": 0, "suppressed": 0}
    assert "user3@example.test" not in smtp_server.handler.deliveries()
    (failed,) = [e for e in audit_entries(folder) if e["ev"] == "failed"]
    assert failed["code"] == 550 and failed["permanent"] is True and failed["attempt"] == 1
    assert "@" not in failed["text"]  # the server echoed the address: redacted


def test_retries_are_bounded(make_campaign: MakeCampaign, cli: Cli,
                             smtp_server: SmtpServer) -> None:
    smtp_server.handler.script("user1@example.test", *["rcpt:450"] * 5)
    folder = make_campaign(**smtp_tables(smtp_server, max_attempts=3))
    result = _send(cli, folder)
    assert result.exit_code == 1
    (failed,) = [e for e in audit_entries(folder) if e["ev"] == "failed"]
    assert failed["attempt"] == 3 and failed["permanent"] is False and failed["code"] == 450


@pytest.mark.parametrize("script", [["data:lost"], ["data:slow"]])
def test_no_answer_after_the_data_is_unknown_and_never_retried(
        make_campaign: MakeCampaign, cli: Cli, smtp_server: SmtpServer,
        script: list[str]) -> None:
    smtp_server.handler.script("user4@example.test", *script)
    smtp_server.handler.slow_seconds = 2.0
    tables = smtp_tables(smtp_server)
    tables["transport"]["timeout"] = 0.5
    folder = make_campaign(**tables)
    result = _send(cli, folder)
    assert result.exit_code == 1
    assert _summary(result)["unknown"] == 1
    assert smtp_server.handler.deliveries()["user4@example.test"] == 1  # it did arrive
    events = [e["ev"] for e in audit_entries(folder) if e.get("row") == 4]
    assert events == ["sending", "unknown"]
    assert "not re-sent unless you pass --resend-unknown" in result.output


def test_slow_reply_before_the_data_is_a_retried_timeout_on_a_new_connection(
        make_campaign: MakeCampaign, cli: Cli, smtp_server: SmtpServer) -> None:
    smtp_server.handler.script("user1@example.test", "rcpt:slow")
    smtp_server.handler.slow_seconds = 1.5
    tables = smtp_tables(smtp_server, concurrency=1)
    tables["transport"]["timeout"] = 0.5
    folder = make_campaign(**tables)
    result = _send(cli, folder)
    assert result.exit_code == 0, result.output
    assert smtp_server.handler.deliveries()["user1@example.test"] == 1
    # The timed-out connection was closed, not reused: probe + first + replacement.
    assert smtp_server.handler.connections == 3


def test_rerun_skips_the_delivered_and_keeps_unknown_and_failed_unless_asked(
        make_campaign: MakeCampaign, cli: Cli, smtp_server: SmtpServer) -> None:
    handler = smtp_server.handler
    handler.script("user1@example.test", "data:lost")
    handler.script("user2@example.test", "rcpt:450", "rcpt:450", "rcpt:450")
    handler.script("user3@example.test", "rcpt:550")
    folder = make_campaign(**smtp_tables(smtp_server))
    first = _send(cli, folder)
    assert _summary(first) == {"delivered": 2, "failed": 2, "unknown": 1, "duplicate": 0,
                               "suppressed": 0}
    second = _send(cli, folder)
    assert second.exit_code == 1
    assert _summary(second) == _summary(first)
    assert "from earlier runs: 2 delivered, 2 failed, 1 unknown" in second.output
    assert handler.deliveries() == {"user1@example.test": 1, "user4@example.test": 1,
                                    "user5@example.test": 1}
    third = _send(cli, folder, "--retry-failed")
    assert handler.deliveries()["user2@example.test"] == 1  # transient: retried
    assert "user3@example.test" not in handler.deliveries()  # permanent: not retried
    assert _summary(third)["failed"] == 1
    fourth = _send(cli, folder, "--resend-unknown")
    assert handler.deliveries()["user1@example.test"] == 2  # asked for explicitly
    assert _summary(fourth).get("unknown", 0) == 0


def test_resent_unknown_message_keeps_its_message_id(
        make_campaign: MakeCampaign, cli: Cli, smtp_server: SmtpServer) -> None:
    smtp_server.handler.script("user1@example.test", "data:lost")
    folder = make_campaign(**smtp_tables(smtp_server))
    _send(cli, folder)
    _send(cli, folder, "--resend-unknown")
    copies = [parse(m.data)["Message-ID"] for m in smtp_server.handler.received
              if m.rcpt_tos == ["user1@example.test"]]
    assert len(copies) == 2 and copies[0] == copies[1]


def test_breaker_halts_a_failing_run_and_a_rerun_resumes(
        make_campaign: MakeCampaign, cli: Cli, smtp_server: SmtpServer) -> None:
    rows = default_rows(60)
    for row in rows[:20]:
        smtp_server.handler.script(row["email"], "rcpt:550")
    tables = smtp_tables(smtp_server, concurrency=2)
    tables["breaker"] = {"window": 10, "threshold": 0.5, "min_messages": 10}
    folder = make_campaign(rows=rows, **tables)
    first = _send(cli, folder)
    assert first.exit_code == 3
    assert "HALTED: circuit breaker" in first.output
    counts = _summary(first)
    assert counts["pending"] > 30
    smtp_server.handler.faults.clear()  # the operator fixed the cause
    second = _send(cli, folder)
    assert second.exit_code == 1  # those refused in the first run stay failed
    assert _summary(second) == {"delivered": 60 - counts["failed"], "failed": counts["failed"],
                                "duplicate": 0, "suppressed": 0}
    assert set(smtp_server.handler.deliveries().values()) == {1}


def test_canary_sends_n_then_waits_for_continue(
        make_campaign: MakeCampaign, cli: Cli, smtp_server: SmtpServer) -> None:
    folder = make_campaign(rows=default_rows(12), **smtp_tables(smtp_server))
    first = _send(cli, folder, "--canary", "3")
    assert first.exit_code == 3
    assert "canary: 3 messages sent" in first.output
    assert len(smtp_server.handler.received) == 3
    waiting = _send(cli, folder)
    assert waiting.exit_code == 3
    assert "awaits go-ahead" in waiting.output
    assert len(smtp_server.handler.received) == 3
    going = _send(cli, folder, "--continue")
    assert going.exit_code == 0
    assert smtp_server.handler.deliveries() == {f"user{i}@example.test": 1
                                                for i in range(1, 13)}


def test_smtp_send_without_a_terminal_needs_yes(
        make_campaign: MakeCampaign, cli: Cli, smtp_server: SmtpServer) -> None:
    folder = make_campaign(**smtp_tables(smtp_server))
    result = cli("send", folder.config)
    assert result.exit_code == 2
    assert "About to send campaign 'test-campaign': up to 5 messages" in result.output
    assert f"smtp 127.0.0.1:{smtp_server.port}" in result.output
    assert "pass --yes" in result.output
    assert smtp_server.handler.received == []


def test_internationalised_recipient_is_sent_with_smtputf8(
        make_campaign: MakeCampaign, cli: Cli, smtp_server: SmtpServer) -> None:
    rows = default_rows(2)
    rows[1]["email"] = "josé@exämple.test"
    folder = make_campaign(rows=rows, **smtp_tables(smtp_server))
    result = _send(cli, folder)
    assert result.exit_code == 0, result.output
    assert "josé@exämple.test" in smtp_server.handler.deliveries()


def test_unreachable_server_is_an_error_before_anything_is_sent(
        make_campaign: MakeCampaign, cli: Cli, smtp_server: SmtpServer) -> None:
    tables = smtp_tables(smtp_server)
    smtp_server.stop()
    folder = make_campaign(**tables)
    result = _send(cli, folder)
    assert result.exit_code == 2
    assert "cannot connect" in result.output


def test_audit_log_is_private_pseudonymous_and_chained(
        make_campaign: MakeCampaign, cli: Cli, smtp_server: SmtpServer) -> None:
    folder = make_campaign(**smtp_tables(smtp_server))
    assert _send(cli, folder).exit_code == 0
    log = folder.root / "test-campaign.audit.jsonl"
    assert stat.S_IMODE(log.stat().st_mode) == 0o600
    text = log.read_text(encoding="utf-8")
    assert "example.test" not in text and "User 1" not in text
    entries = audit_entries(folder)
    assert all(e["prev"] == p["hash"] for p, e in itertools.pairwise(entries))
    assert {e["rcpt"] for e in entries if e["ev"] == "delivered"} == {
        e["rcpt"] for e in entries if e["ev"] == "sending"}


def test_cleartext_audit_log_when_the_campaign_asks(
        make_campaign: MakeCampaign, cli: Cli, smtp_server: SmtpServer) -> None:
    folder = make_campaign(audit={"cleartext": True}, **smtp_tables(smtp_server))
    assert _send(cli, folder).exit_code == 0
    delivered = [e for e in audit_entries(folder) if e["ev"] == "delivered"]
    assert {e["addr"] for e in delivered} == {f"user{i}@example.test" for i in range(1, 6)}


def _with_seeds(make_campaign: MakeCampaign, smtp_server: SmtpServer,
                seeds: list[str]) -> Any:
    folder = make_campaign(canary={"seeds": "seeds.csv",
                                   "allow": ["@sender.test", "qa@example.test"]},
                           **smtp_tables(smtp_server))
    rows = [{"email": address, "name": "QA", "first_name": "QA", "plan": "Team",
             "account": f"SEED-{n:04d}"} for n, address in enumerate(seeds)]
    from tests.conftest import write_rows

    write_rows(folder.root / "seeds.csv", rows)
    return folder


def test_seed_canary_goes_only_to_allow_listed_seeds_then_waits(
        make_campaign: MakeCampaign, cli: Cli, smtp_server: SmtpServer) -> None:
    folder = _with_seeds(make_campaign, smtp_server, ["qa@example.test", "tester@sender.test"])
    test_send = _send(cli, folder, "--canary-seeds")
    assert test_send.exit_code == 3, test_send.output
    assert sorted(smtp_server.handler.deliveries()) == ["qa@example.test",
                                                        "tester@sender.test"]
    waiting = _send(cli, folder)
    assert waiting.exit_code == 3
    assert len(smtp_server.handler.received) == 2
    going = _send(cli, folder, "--continue")
    assert going.exit_code == 0, going.output
    assert len(smtp_server.handler.received) == 2 + 5


def test_seed_not_on_the_allow_list_stops_the_test_send(
        make_campaign: MakeCampaign, cli: Cli, smtp_server: SmtpServer) -> None:
    folder = _with_seeds(make_campaign, smtp_server, ["qa@example.test", "user1@example.test"])
    result = _send(cli, folder, "--canary-seeds")
    assert result.exit_code == 2
    assert "row 2: not on the canary allow-list" in result.output
    assert smtp_server.handler.received == []


def test_report_groups_failures_by_smtp_code_without_addresses(
        make_campaign: MakeCampaign, cli: Cli, smtp_server: SmtpServer) -> None:
    import json

    smtp_server.handler.script("user2@example.test", "rcpt:550")
    smtp_server.handler.script("user3@example.test", "data:550")
    smtp_server.handler.script("user4@example.test", "rcpt:450", "rcpt:450", "rcpt:450")
    folder = make_campaign(**smtp_tables(smtp_server))
    _send(cli, folder)
    log = folder.root / "test-campaign.audit.jsonl"
    result = cli("report", log, "--format", "json")
    assert result.exit_code == 0
    document = json.loads(result.output)
    assert document["failures_by_code"] == {"550": 2, "450": 1}
    assert document["states"]["delivered"] == 2 and document["states"]["failed"] == 3
    assert document["retries"] == 2
    assert "example.test" not in result.output
