"""``campaign preview``: exactly what chosen recipients will receive."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from click.testing import Result

from tests.conftest import MakeCampaign, default_rows, parse

Cli = Callable[..., Result]


def test_preview_shows_headers_and_text_of_the_first_rows(make_campaign: MakeCampaign,
                                                          cli: Cli) -> None:
    result = cli("preview", make_campaign().config, "-n", "2")
    assert result.exit_code == 0
    assert result.output.count("message to be sent") == 2
    assert "To: User 1 <user1@example.test>" in result.output
    assert "Subject: News for User2" in result.output
    assert "Hello User2," in result.output
    assert "user3@example.test" not in result.output


def test_preview_of_a_named_recipient_matches_case_insensitively(make_campaign: MakeCampaign,
                                                                  cli: Cli) -> None:
    result = cli("preview", make_campaign().config, "--recipient", "USER4@example.test")
    assert result.exit_code == 0
    assert "row 4: message to be sent" in result.output
    assert result.output.count("message to be sent") == 1


def test_preview_of_an_unknown_recipient_is_an_error(make_campaign: MakeCampaign,
                                                     cli: Cli) -> None:
    result = cli("preview", make_campaign().config, "--recipient", "nobody@example.test")
    assert result.exit_code == 1
    assert "nobody@example.test: no sendable row has this address" in result.output


def test_preview_shows_why_a_row_gets_no_message(make_campaign: MakeCampaign, cli: Cli) -> None:
    rows = default_rows(3)
    rows[1]["plan"] = rows[0]["account"]
    result = cli("preview", make_campaign(rows=rows).config, "-n", "3")
    assert result.exit_code == 1
    assert "row 2: NOT SENDABLE: text body contains the value of private column" \
        in result.output


def test_preview_out_writes_eml_files_and_a_gallery(make_campaign: MakeCampaign, cli: Cli,
                                                    tmp_path: Path) -> None:
    out = tmp_path / "preview"
    folder = make_campaign(html='<p>Hi {{ first_name }}</p><img src="https://tracker.test/p.gif">')
    result = cli("preview", folder.config, "-n", "3", "--out", out)
    assert result.exit_code == 0
    emls = sorted(out.glob("*.eml"))
    assert [p.name for p in emls] == ["001-row1.eml", "002-row2.eml", "003-row3.eml"]
    assert parse(emls[0].read_bytes())["To"].addresses[0].addr_spec == "user1@example.test"
    index = (out / "index.html").read_text(encoding="utf-8")
    assert index.count('class="card"') == 3
    assert "News for User3" in index
    csp = re.search(r'Content-Security-Policy" content="([^"]+)"', index)
    assert csp and "default-src 'none'" in csp.group(1) and "img-src data:" in csp.group(1)
    assert "<iframe" in index and "sandbox" in index


def test_preview_sends_nothing(make_campaign: MakeCampaign, cli: Cli) -> None:
    folder = make_campaign()
    cli("preview", folder.config)
    assert not folder.maildir.exists()
