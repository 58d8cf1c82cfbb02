"""``campaign send`` end to end into the Maildir: all or nothing, one recipient each."""

from __future__ import annotations

import os
import re
import shutil
import stat
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import Result

from tests.conftest import REPO, MakeCampaign, body_text, default_rows, parse, run_campaign

Cli = Callable[..., Result]


def test_send_delivers_one_private_message_per_recipient(make_campaign: MakeCampaign,
                                                         cli: Cli) -> None:
    folder = make_campaign(rows=default_rows(6))
    result = cli("send", folder.config)
    assert result.exit_code == 0, result.output
    messages = folder.messages()
    assert sorted(m["To"].addresses[0].addr_spec for m in messages) == [
        f"user{i}@example.test" for i in range(1, 7)]
    for message in messages:
        assert len(message["To"].addresses) == 1
        assert "Cc" not in message and "Bcc" not in message
        address = message["To"].addresses[0].addr_spec
        number = re.search(r"user(\d+)@", address).group(1)  # type: ignore[union-attr]
        assert message["Subject"] == f"News for User{number}"
        assert f"Hello User{number}," in (body_text(message, "plain") or "")
    assert "6 delivered, 0 failed, 0 duplicate, 0 suppressed = 6 of 6 rows" in result.output


def test_maildir_files_are_private_and_complete(make_campaign: MakeCampaign, cli: Cli) -> None:
    folder = make_campaign()
    assert cli("send", folder.config).exit_code == 0
    assert list((folder.maildir / "tmp").iterdir()) == []
    for path in folder.delivered():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert path.name.endswith(f",S={path.stat().st_size}")


def test_duplicate_differing_only_in_case_is_sent_once_and_reported(
        make_campaign: MakeCampaign, cli: Cli) -> None:
    rows = default_rows(3)
    rows.append({**rows[1], "email": rows[1]["email"].upper().replace("EXAMPLE", "Example")})
    folder = make_campaign(rows=rows)
    result = cli("send", folder.config)
    assert result.exit_code == 0
    assert len(folder.delivered()) == 3
    assert "row 4: same address as row 2" in result.output
    assert "3 delivered, 0 failed, 1 duplicate, 0 suppressed = 4 of 4 rows" in result.output


def test_suppressed_recipient_is_never_sent(make_campaign: MakeCampaign, cli: Cli) -> None:
    folder = make_campaign(suppressed=["USER2@example.test"])
    result = cli("send", folder.config)
    assert result.exit_code == 0
    addresses = {m["To"].addresses[0].addr_spec for m in folder.messages()}
    assert "user2@example.test" not in addresses and len(addresses) == 4
    assert "1 suppressed = 5 of 5 rows" in result.output


def test_dry_run_checks_everything_and_delivers_nothing(make_campaign: MakeCampaign,
                                                        cli: Cli) -> None:
    folder = make_campaign()
    result = cli("send", folder.config, "--dry-run")
    assert result.exit_code == 0
    assert "5 messages would be sent" in result.output
    assert not folder.maildir.exists()


def _hostile(rows_change: Callable[[list[dict[str, str]]], None]) -> list[dict[str, str]]:
    rows = default_rows(5)
    rows_change(rows)
    return rows


HOSTILE_ROWS = {
    "name with a Bcc line": (
        lambda rows: rows[2].update(name="Alice\nBCC: eve@example.test"),
        "row 3: column 'name' contains a line break"),
    "first name with a Bcc line, used in the subject": (
        lambda rows: rows[2].update(first_name="Alice\nBCC: eve@example.test"),
        "row 3: Subject contains a line break (LF), which must never reach a header"),
    "two addresses in one cell": (
        lambda rows: rows[1].update(email="bob@example.test, carol@example.test"),
        "row 2: column 'email' holds several addresses"),
    "display-name trick": (
        lambda rows: rows[1].update(email='"a@x.test" <b@y.test>'),
        "row 2: column 'email' holds a display name or angle brackets"),
    "group syntax": (
        lambda rows: rows[1].update(email="undisclosed-recipients:;"),
        "row 2: column 'email' uses group syntax"),
    "NUL in a name": (
        lambda rows: rows[0].update(name="Al\x00ice"),
        "row 1: column 'name' contains a NUL character"),
}


@pytest.mark.parametrize("case", list(HOSTILE_ROWS))
def test_hostile_row_stops_the_campaign_before_any_delivery(make_campaign: MakeCampaign,
                                                            cli: Cli, case: str) -> None:
    change, message = HOSTILE_ROWS[case]
    folder = make_campaign(rows=_hostile(change))
    result = cli("send", folder.config)
    assert result.exit_code == 2
    assert message in result.output
    assert "Nothing was sent." in result.output
    assert "Traceback" not in result.output
    assert folder.delivered() == []


def test_template_reaching_python_internals_is_a_clear_error(make_campaign: MakeCampaign,
                                                             cli: Cli) -> None:
    folder = make_campaign(text="{{ ''.__class__.__mro__ }}")
    result = cli("send", folder.config)
    assert result.exit_code == 2
    assert "refused by the sandbox" in result.output and "__class__" in result.output
    assert folder.delivered() == []


def test_template_printing_another_recipients_address_stops_everything(
        make_campaign: MakeCampaign, cli: Cli) -> None:
    rows = default_rows(5)
    for row in rows:
        row["referrer"] = "nobody@elsewhere.test"
    rows[3]["referrer"] = rows[0]["email"]  # row 4 names row 1's address
    folder = make_campaign(rows=rows, text="Hi {{ first_name }}, referred by {{ referrer }}")
    result = cli("send", folder.config)
    assert result.exit_code == 2
    assert ("row 4: text body contains the address of row 1, another recipient of this "
            "campaign") in result.output
    assert folder.delivered() == []


def test_template_printing_another_recipients_private_value_stops_everything(
        make_campaign: MakeCampaign, cli: Cli) -> None:
    rows = default_rows(4)
    rows[2]["plan"] = rows[0]["account"]  # a private value copied into row 3's data
    folder = make_campaign(rows=rows)
    result = cli("send", folder.config)
    assert result.exit_code == 2
    assert "row 3: text body contains the value of private column 'account' of row 1" \
        in result.output
    assert folder.delivered() == []


def test_every_problem_is_listed_not_just_the_first(make_campaign: MakeCampaign,
                                                    cli: Cli) -> None:
    rows = default_rows(6)
    rows[1]["email"] = "not-an-address"
    rows[4]["email"] = "x@y.test; z@y.test"
    folder = make_campaign(rows=rows)
    result = cli("send", folder.config)
    assert "row 2:" in result.output and "row 5:" in result.output
    assert "2 error(s)" in result.output


@pytest.mark.parametrize(("content", "message"), [
    (b"", "the file is empty; it needs a header row"),
    (b"email,name,account\n", "the list has no recipients"),
    (b"mail,name\na@x.test,A\n", "the header has no column 'email', 'account'"),
    (b'email,name,account\na@x.test,A,1\nb@x.test,"B,2\nc@x.test,C,3\n', "malformed CSV"),
    (b"email,name,account\na@x.test,A,1,9\n", "row 1: has 4 fields; the header has 3"),
])
def test_unusable_recipient_file_is_a_clear_error_with_exit_2(
        make_campaign: MakeCampaign, cli: Cli, content: bytes, message: str) -> None:
    folder = make_campaign(recipients_text=content)
    result = cli("send", folder.config)
    assert result.exit_code == 2
    assert message in result.output
    assert "recipients.csv" in result.output
    assert folder.delivered() == []


def test_csv_with_bom_is_sent_normally(make_campaign: MakeCampaign, cli: Cli) -> None:
    content = "\ufeffemail,name,first_name,plan,account\r\nbom@example.test,B,Bo,Team,A-77\r\n"
    folder = make_campaign(recipients_text=content.encode())
    assert cli("send", folder.config).exit_code == 0
    assert folder.messages()[0]["To"].addresses[0].addr_spec == "bom@example.test"


@pytest.mark.parametrize("fmt", ["json", "jsonl"])
def test_json_and_json_lines_lists_are_sent(make_campaign: MakeCampaign, cli: Cli,
                                            fmt: str) -> None:
    folder = make_campaign(fmt=fmt)
    assert cli("send", folder.config).exit_code == 0
    assert len(folder.delivered()) == 5


def test_missing_template_variable_names_row_template_and_line(make_campaign: MakeCampaign,
                                                               cli: Cli) -> None:
    folder = make_campaign(text="Hi\n{{ nickname }}\n")
    result = cli("send", folder.config)
    assert result.exit_code == 2
    assert "row 1: 'nickname' is undefined" in result.output
    assert "body.txt:2" in result.output


def test_unsubscribe_key_file_is_created_private_on_first_send(
        make_campaign: MakeCampaign, cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CAMPAIGN_UNSUBSCRIBE_KEY")
    folder = make_campaign(unsubscribe={"key_file": "keys/unsub.key"})
    assert cli("send", folder.config).exit_code == 0
    key_file = folder.root / "keys" / "unsub.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600


def test_send_without_any_unsubscribe_key_is_a_config_error(
        make_campaign: MakeCampaign, cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CAMPAIGN_UNSUBSCRIBE_KEY")
    folder = make_campaign()
    result = cli("send", folder.config)
    assert result.exit_code == 2
    assert "no unsubscribe key" in result.output
    assert folder.delivered() == []


def test_list_unsubscribe_token_verifies_for_its_recipient(make_campaign: MakeCampaign,
                                                           cli: Cli) -> None:
    from campaign_tool import verify_unsubscribe_token

    folder = make_campaign()
    assert cli("send", folder.config).exit_code == 0
    key = os.environ["CAMPAIGN_UNSUBSCRIBE_KEY"].encode()
    for message in folder.messages():
        token = re.search(r"t=([\w-]+)>", message["List-Unsubscribe"]).group(1)  # type: ignore[union-attr]
        address = message["To"].addresses[0].addr_spec
        assert verify_unsubscribe_token(key, "test-campaign", address, token)
        assert not verify_unsubscribe_token(key, "test-campaign", "other@example.test", token)


def test_example_campaign_runs_from_a_fresh_copy_as_a_real_process(tmp_path: Path) -> None:
    """The README's first command, in a subprocess with no terminal and no key set."""
    copy = tmp_path / "repo"
    shutil.copytree(REPO / "examples", copy / "examples",
                    ignore=shutil.ignore_patterns("outbox", ".keys", "preview", "*.jsonl"))
    shutil.copytree(REPO / "templates", copy / "templates")
    env = {k: v for k, v in os.environ.items() if k != "CAMPAIGN_UNSUBSCRIBE_KEY"}
    result = run_campaign("send", "examples/newsletter/campaign.toml", cwd=copy, env=env)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    delivered = list((copy / "examples/newsletter/outbox/new").iterdir())
    counts = re.search(r"(\d+) delivered, 0 failed, (\d+) duplicate, (\d+) suppressed = "
                       r"(\d+) of (\d+) rows", result.stdout)
    assert counts, result.stdout
    sent, duplicate, suppressed, accounted, rows = map(int, counts.groups())
    assert sent == len(delivered) and sent + duplicate + suppressed == accounted == rows
    for path in delivered:
        message = parse(path.read_bytes())
        assert len(message["To"].addresses) == 1
