"""``campaign lint``: every check, nothing sent, findings for people and machines."""

from __future__ import annotations

import json
from collections.abc import Callable

from click.testing import Result

from tests.conftest import MakeCampaign, default_rows

Cli = Callable[..., Result]


def test_clean_campaign_lints_with_exit_0(make_campaign: MakeCampaign, cli: Cli) -> None:
    folder = make_campaign()
    result = cli("lint", folder.config)
    assert result.exit_code == 0
    assert "lint: 5 rows, 5 messages checked: 0 errors, 0 warnings" in result.output
    assert not folder.maildir.exists()


def test_findings_give_exit_1_and_one_line_each(make_campaign: MakeCampaign, cli: Cli) -> None:
    rows = default_rows(4)
    rows[1]["email"] = "a@x.test, b@x.test"
    rows[3]["name"] = "Eve\r\nBcc: eve@evil.test"
    result = cli("lint", make_campaign(rows=rows).config)
    assert result.exit_code == 1
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 2
    assert "recipients.csv:3: row 2: column 'email' holds several addresses" in errors[0]
    assert "recipients.csv:5: row 4: column 'name' contains a carriage return" in errors[1]


def test_json_format_is_stable_and_complete(make_campaign: MakeCampaign, cli: Cli) -> None:
    rows = default_rows(3)
    rows[2]["email"] = "broken"
    result = cli("lint", make_campaign(rows=rows).config, "--format", "json")
    assert result.exit_code == 1
    document = json.loads(result.output)
    assert document["version"] == 1 and document["ok"] is False
    assert document["summary"]["errors"] == 1 and document["summary"]["rows"] == 3
    (finding,) = document["findings"]
    assert set(finding) == {"file", "line", "row", "code", "severity", "message"}
    assert finding["code"] == "recipient-invalid" and finding["row"] == 3
    assert finding["line"] == 4 and finding["severity"] == "error"
    assert finding["file"].endswith("recipients.csv")


def test_github_format_prints_annotations(make_campaign: MakeCampaign, cli: Cli) -> None:
    rows = default_rows(2)
    rows[0]["email"] = "nope"
    result = cli("lint", make_campaign(rows=rows).config, "--format", "github")
    assert result.exit_code == 1
    line = result.output.splitlines()[0]
    assert line.startswith("::error file=")
    assert "recipients.csv,line=2,title=recipient-invalid::row 1: column 'email'" in line


def test_unusable_config_gives_exit_2_in_every_format(make_campaign: MakeCampaign,
                                                      cli: Cli) -> None:
    folder = make_campaign(headers={"Bcc": "boss@sender.test"})
    for fmt in ("text", "json", "github"):
        result = cli("lint", folder.config, "--format", fmt)
        assert result.exit_code == 2, fmt
        assert "names recipients" in result.output


def test_lint_reports_a_leak_it_would_stop_a_send_for(make_campaign: MakeCampaign,
                                                      cli: Cli) -> None:
    rows = default_rows(3)
    rows[1]["plan"] = rows[2]["email"]
    result = cli("lint", make_campaign(rows=rows).config, "--format", "json")
    codes = [f["code"] for f in json.loads(result.output)["findings"]]
    assert codes == ["privacy-leak"]


def test_many_findings_are_capped_but_counted(make_campaign: MakeCampaign, cli: Cli) -> None:
    rows = default_rows(30)
    for row in rows:
        row["email"] = "broken"
    result = cli("lint", make_campaign(rows=rows).config, "--max-per-code", "5")
    assert result.output.count("error:") == 5
    assert "... and 25 more 'recipient-invalid' findings" in result.output
    assert "30 errors" in result.output


def test_lint_without_the_unsubscribe_key_warns_but_checks(
        make_campaign: MakeCampaign, cli: Cli, monkeypatch: object) -> None:
    import pytest

    assert isinstance(monkeypatch, pytest.MonkeyPatch)
    monkeypatch.delenv("CAMPAIGN_UNSUBSCRIBE_KEY")
    result = cli("lint", make_campaign().config)
    assert result.exit_code == 0
    assert "no unsubscribe key" in result.output
