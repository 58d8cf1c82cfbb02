"""The audit log: tamper-evident, private, locked, and the source of truth for resume."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import Result

from campaign_tool.audit import AuditLog, redact, verify_chain
from campaign_tool.errors import AuditLogError
from tests.conftest import CampaignFolder, MakeCampaign, audit_entries, default_rows

Cli = Callable[..., Result]
KEY = b"k" * 32


def _sent_campaign(make_campaign: MakeCampaign, cli: Cli) -> tuple[CampaignFolder, Path]:
    folder = make_campaign()
    assert cli("send", folder.config).exit_code == 0
    return folder, folder.root / "test-campaign.audit.jsonl"


def test_verify_accepts_an_untouched_log(make_campaign: MakeCampaign, cli: Cli) -> None:
    _, log = _sent_campaign(make_campaign, cli)
    result = cli("audit", "verify", log)
    assert result.exit_code == 0
    assert "hash chain intact" in result.output


@pytest.mark.parametrize("tamper", ["edit", "delete", "insert", "reorder"])
def test_verify_detects_tampering(make_campaign: MakeCampaign, cli: Cli, tamper: str) -> None:
    _, log = _sent_campaign(make_campaign, cli)
    lines = log.read_text(encoding="utf-8").splitlines(keepends=True)
    if tamper == "edit":
        assert '"t":"2' in lines[3]
        lines[3] = lines[3].replace('"t":"2', '"t":"1', 1)  # backdate one entry
    elif tamper == "delete":
        del lines[4]
    elif tamper == "insert":
        lines.insert(2, lines[2])
    else:
        lines[3], lines[4] = lines[4], lines[3]
    log.write_text("".join(lines), encoding="utf-8")
    result = cli("audit", "verify", log)
    assert result.exit_code == 1
    assert "TAMPERED" in result.output


def test_send_refuses_to_resume_from_a_tampered_log(make_campaign: MakeCampaign,
                                                    cli: Cli) -> None:
    folder, log = _sent_campaign(make_campaign, cli)
    lines = log.read_text(encoding="utf-8").splitlines(keepends=True)
    delivered = [i for i, line in enumerate(lines) if '"ev":"delivered"' in line]
    del lines[delivered[0]]  # as if to make someone be mailed again
    log.write_text("".join(lines), encoding="utf-8")
    before = len(folder.delivered())
    result = cli("send", folder.config)
    assert result.exit_code == 2
    assert "tampered with" in result.output
    assert len(folder.delivered()) == before


def test_torn_last_line_from_a_crash_is_removed_and_noted(make_campaign: MakeCampaign,
                                                          cli: Cli) -> None:
    folder, log = _sent_campaign(make_campaign, cli)
    with log.open("ab") as handle:
        handle.write(b'{"ev":"sending","seq":')  # a write cut short by kill -9
    assert "incomplete" in cli("audit", "verify", log).output
    result = cli("send", folder.config)
    assert result.exit_code == 0, result.output
    assert verify_chain(log)[1:] == ([], False)
    assert any(e["ev"] == "recovered" for e in audit_entries(folder))


def test_a_second_send_of_the_same_campaign_is_refused_while_one_runs(tmp_path: Path) -> None:
    log_path = tmp_path / "c.audit.jsonl"
    first, _ = AuditLog.open(log_path, key=KEY, cleartext=False)
    try:
        with pytest.raises(AuditLogError, match="another `campaign send` is running"):
            AuditLog.open(log_path, key=KEY, cleartext=False)
    finally:
        first.close_sync()


def test_changed_audit_key_is_refused(make_campaign: MakeCampaign, cli: Cli,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    folder, _ = _sent_campaign(make_campaign, cli)
    monkeypatch.setenv("CAMPAIGN_AUDIT_KEY", "another-key-entirely-0123456789")
    result = cli("send", folder.config)
    assert result.exit_code == 2
    assert "different audit key" in result.output


def test_changed_recipient_list_is_reported_not_mixed(make_campaign: MakeCampaign,
                                                      cli: Cli) -> None:
    folder, _ = _sent_campaign(make_campaign, cli)
    data = folder.root / "recipients.csv"
    data.write_text(data.read_text(encoding="utf-8") +
                    "new@example.test,New,New,Team,ACC-99999\n", encoding="utf-8")
    result = cli("send", folder.config)
    assert result.exit_code == 2
    assert "the recipient list changed since the last run" in result.output
    assert len(folder.delivered()) == 5
    accepted = cli("send", folder.config, "--accept-changes")
    assert accepted.exit_code == 0
    assert len(folder.delivered()) == 6
    assert "from earlier runs: 5 delivered" in accepted.output


def test_changed_template_is_reported(make_campaign: MakeCampaign, cli: Cli) -> None:
    folder, _ = _sent_campaign(make_campaign, cli)
    (folder.root / "body.txt").write_text("Different text {{ first_name }}", encoding="utf-8")
    result = cli("send", folder.config)
    assert result.exit_code == 2
    assert "the templates or message settings changed" in result.output


def test_report_counts_final_states_without_addresses(make_campaign: MakeCampaign,
                                                      cli: Cli) -> None:
    rows = default_rows(6)
    rows.append(dict(rows[0]))
    folder = make_campaign(rows=rows, suppressed=["user6@example.test"])
    assert cli("send", folder.config).exit_code == 0
    log = folder.root / "test-campaign.audit.jsonl"
    text = cli("report", log)
    assert text.exit_code == 0
    assert "5 delivered, 0 failed, 0 unknown, 1 suppressed, 1 duplicate" in text.output
    assert "example.test" not in text.output
    document = json.loads(cli("report", log, "--format", "json").output)
    assert document["states"]["delivered"] == 5 and document["rows"] == 7
    assert sum(document["states"].values()) == document["rows"]


def test_server_replies_are_redacted() -> None:
    assert redact("550 5.1.1 <alice@example.test>: unknown user alice@example.test") == \
        "550 5.1.1 <<redacted>>: unknown user <redacted>"


def test_group_commit_makes_entries_durable_before_returning(tmp_path: Path) -> None:
    async def scenario() -> int:
        log, _ = AuditLog.open(tmp_path / "a.jsonl", key=KEY, cleartext=False)
        await log.start()
        seqs = [log.append("sending", row=n, **log.recipient_fields(f"u{n}@x.test"))
                for n in range(50)]
        await log.durable(seqs[-1])
        on_disk = len((tmp_path / "a.jsonl").read_text().splitlines())
        await log.close()
        return on_disk

    assert asyncio.run(scenario()) == 50
    assert verify_chain(tmp_path / "a.jsonl") == (50, [], False)
