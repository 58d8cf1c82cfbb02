"""The campaign file: strict keys, relative paths, and no way to ask for shared recipients."""

from __future__ import annotations

from pathlib import Path

import pytest

from campaign_tool.config import load_config
from campaign_tool.errors import ConfigError
from tests.conftest import MakeCampaign


def _errors(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    return [f.describe() for f in caught.value.findings]


def test_valid_config_resolves_paths_relative_to_its_file(make_campaign: MakeCampaign) -> None:
    folder = make_campaign()
    config = load_config(folder.config)
    assert config.recipients.path == folder.root.resolve() / "recipients.csv"
    assert config.templates.html == folder.root.resolve() / "body.html"
    assert config.recipients.resolved_format == "csv"


def test_unknown_key_is_an_error_naming_file_key_and_line(make_campaign: MakeCampaign) -> None:
    folder = make_campaign(campaign={"subjet": "typo"})
    errors = _errors(folder.config)
    assert any("campaign.subjet" in e and "unknown key" in e for e in errors)
    assert any(e.startswith(f"{folder.config}:") or "campaign.toml:" in e for e in errors)
    line = next(e for e in errors if "subjet" in e).split(":")[1]
    assert line.isdigit()
    assert "subjet" in folder.config.read_text().splitlines()[int(line) - 1]


@pytest.mark.parametrize("table", ["campaign", "sender", "recipients"])
@pytest.mark.parametrize("key", ["cc", "bcc", "to", "Cc"])
def test_shared_to_cc_bcc_keys_are_refused_with_the_reason(make_campaign: MakeCampaign,
                                                           table: str, key: str) -> None:
    folder = make_campaign(**{table: {key: "boss@sender.test"}})
    errors = _errors(folder.config)
    assert any("shared To/Cc/Bcc recipients are refused" in e and key in e for e in errors)


@pytest.mark.parametrize("header", ["To", "Cc", "BCC", "Resent-To", "resent-cc",
                                    "Delivered-To", "Return-Path", "X-Original-To",
                                    "Disposition-Notification-To"])
def test_extra_header_naming_recipients_is_refused(make_campaign: MakeCampaign,
                                                   header: str) -> None:
    folder = make_campaign(headers={header: "someone@example.test"})
    errors = _errors(folder.config)
    assert any("names recipients" in e for e in errors), errors


@pytest.mark.parametrize(("header", "reason"), [
    ("From", "set from [sender]"), ("Sender", "set from [sender]"),
    ("Reply-To", "set from [sender]"), ("Subject", "written by campaign_tool"),
    ("Message-ID", "written by campaign_tool"), ("List-Unsubscribe", "written by"),
    ("Bad Name", "not a valid header name")])
def test_extra_header_that_overrides_managed_headers_is_refused(
        make_campaign: MakeCampaign, header: str, reason: str) -> None:
    errors = _errors(make_campaign(headers={header: "x"}).config)
    assert any(reason in e for e in errors), errors


def test_extra_header_value_with_a_line_break_is_refused(make_campaign: MakeCampaign) -> None:
    errors = _errors(make_campaign(headers={"X-Note": "hi\r\nBcc: eve@evil.test"}).config)
    assert any("line break" in e or "carriage return" in e for e in errors)


@pytest.mark.parametrize("address", ["a@x.test, b@y.test", "News <news@x.test>", "nope"])
def test_sender_must_be_one_bare_address(make_campaign: MakeCampaign, address: str) -> None:
    errors = _errors(make_campaign(sender={"address": address}).config)
    assert any("sender.address" in e and "not a single valid address" in e for e in errors)


def test_unsubscribe_url_must_be_https(make_campaign: MakeCampaign) -> None:
    errors = _errors(make_campaign(unsubscribe={"url": "http://x.test/u"}).config)
    assert any("https://" in e for e in errors)


def test_missing_required_table_is_named(make_campaign: MakeCampaign) -> None:
    errors = _errors(make_campaign(sender=None).config)
    assert any("'sender': required but missing" in e for e in errors)


def test_no_body_template_is_refused(make_campaign: MakeCampaign) -> None:
    errors = _errors(make_campaign(html=None, text=None).config)
    assert any("at least one of 'html' and 'text'" in e for e in errors)


def test_invalid_toml_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "campaign.toml"
    path.write_text("[campaign]\nid = \"x\"\nsubject = \n", encoding="utf-8")
    errors = _errors(path)
    assert errors and ":3:" in errors[0] and "not valid TOML" in errors[0]


def test_missing_config_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file"):
        load_config(tmp_path / "nope.toml")


def test_unknown_list_extension_needs_an_explicit_format(make_campaign: MakeCampaign) -> None:
    folder = make_campaign(recipients={"path": "people.txt"})
    errors = _errors(folder.config)
    assert any("cannot tell the format" in e for e in errors)
