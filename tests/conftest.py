"""Shared fixtures: a factory of real campaign folders, and ways to run the CLI."""

from __future__ import annotations

import csv
import email
import email.policy
import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from campaign_tool.cli import main
from tests.smtp_server import RecordingHandler, SmtpServer

REPO = Path(__file__).resolve().parent.parent

HTML = """<html><body><p>Hello {{ first_name }},</p>
<p>Your plan: {{ plan }}.</p>
<p><a href="{{ unsubscribe_url }}">Unsubscribe</a></p></body></html>
"""
TEXT = """Hello {{ first_name }},

Your plan: {{ plan }}.
Unsubscribe: {{ unsubscribe_url }}
"""


def default_rows(count: int = 5) -> list[dict[str, str]]:
    """``count`` ordinary recipients with a private account id each."""
    return [{"email": f"user{i}@example.test", "name": f"User {i}",
             "first_name": f"User{i}", "plan": "Team" if i % 2 else "Personal",
             "account": f"ACC-{70000 + i}"} for i in range(1, count + 1)]


@dataclass
class CampaignFolder:
    """A campaign on disk: the config, its folder, and where the Maildir goes."""

    root: Path
    config: Path

    @property
    def maildir(self) -> Path:
        return self.root / "outbox"

    def delivered(self) -> list[Path]:
        """Message files in the Maildir's new/ folder."""
        new = self.maildir / "new"
        return sorted(new.iterdir()) if new.exists() else []

    def messages(self) -> list[EmailMessage]:
        """Every delivered message, parsed."""
        return [parse(path.read_bytes()) for path in self.delivered()]


def parse(data: bytes) -> EmailMessage:
    """Parse message bytes with the standard library's modern policy.

    Bodies are always 7bit or quoted-printable; only SMTPUTF8 headers (RFC 6532)
    carry raw UTF-8, which the bytes parser would read as surrogates.
    """
    if data.isascii():
        message = email.message_from_bytes(data, policy=email.policy.default)
    else:
        message = email.message_from_string(data.decode("utf-8"), policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    return message


def body_text(message: EmailMessage, subtype: str) -> str | None:
    """The decoded text/<subtype> body with line ends as \\n (or None)."""
    part = message.get_body((subtype,))
    if part is None or part.get_content_subtype() != subtype:
        return None
    content = part.get_content()
    assert isinstance(content, str)
    return content.replace("\r\n", "\n")


def toml_value(value: Any) -> str:
    """A Python value as TOML (strings, numbers, booleans, lists, inline tables)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    raise TypeError(value)


def write_toml(path: Path, tables: dict[str, dict[str, Any]]) -> None:
    """Write nested dicts as a TOML file (one level of tables)."""
    lines = []
    for table, keys in tables.items():
        if keys is None:
            continue
        lines.append(f"[{table}]")
        lines.extend(f"{json.dumps(k) if not k.isidentifier() else k} = {toml_value(v)}"
                     for k, v in keys.items())
        lines.append("")
    path.write_text("\n".join(lines), encoding="utf-8")


def write_rows(path: Path, rows: Sequence[dict[str, Any]], fmt: str = "csv") -> None:
    """Write recipients as CSV, JSON or JSON Lines."""
    if fmt == "csv":
        columns = list(dict.fromkeys(k for row in rows for k in row))
        with path.open("w", encoding="utf-8", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=columns)
            writer.writeheader()
            writer.writerows(rows)
    elif fmt == "json":
        path.write_text(json.dumps(list(rows), ensure_ascii=False, indent=1), encoding="utf-8")
    else:
        path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows),
                        encoding="utf-8")


MakeCampaign = Callable[..., CampaignFolder]


@pytest.fixture
def make_campaign(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> MakeCampaign:
    """Build a campaign folder; keyword arguments override parts of it.

    ``rows`` (list of dicts) or ``recipients_text`` (raw file content),
    ``fmt`` ("csv", "json", "jsonl"), ``html``/``text`` template sources (None
    to leave one out), and per-table overrides: ``campaign``, ``sender``,
    ``recipients``, ``headers``, ``unsubscribe``, ``transport``, ``limits``.
    A table override set to None removes the table.
    """
    monkeypatch.setenv("CAMPAIGN_UNSUBSCRIBE_KEY", "test-unsubscribe-key-0123456789")
    monkeypatch.setenv("CAMPAIGN_AUDIT_KEY", "test-audit-key-0123456789abcdef")
    counter = iter(range(1000))

    def factory(*, rows: Sequence[dict[str, Any]] | None = None,
                recipients_text: str | bytes | None = None, fmt: str = "csv",
                html: str | None = HTML, text: str | None = TEXT,
                suppressed: Sequence[str] | None = None, extra: str = "",
                **tables: Any) -> CampaignFolder:
        root = tmp_path / f"campaign{next(counter)}"
        root.mkdir()
        data_file = root / f"recipients.{fmt}"
        if recipients_text is not None:
            if isinstance(recipients_text, bytes):
                data_file.write_bytes(recipients_text)
            else:
                data_file.write_text(recipients_text, encoding="utf-8")
        else:
            write_rows(data_file, default_rows() if rows is None else rows, fmt)
        templates: dict[str, Any] = {}
        if html is not None:
            (root / "body.html").write_text(html, encoding="utf-8")
            templates["html"] = "body.html"
        if text is not None:
            (root / "body.txt").write_text(text, encoding="utf-8")
            templates["text"] = "body.txt"
        recipients: dict[str, Any] = {"path": data_file.name, "email_column": "email",
                                      "name_column": "name", "private_columns": ["account"]}
        if suppressed is not None:
            (root / "suppressed.txt").write_text("\n".join(suppressed) + "\n", encoding="utf-8")
            recipients["suppression"] = "suppressed.txt"
        config: dict[str, Any] = {
            "campaign": {"id": "test-campaign", "subject": "News for {{ first_name }}"},
            "sender": {"address": "news@sender.test", "name": "Sender News"},
            "templates": templates,
            "recipients": recipients,
            "unsubscribe": {"url": "https://sender.test/u?t={{ token }}",
                            "mailto": "unsubscribe@sender.test"},
            "transport": {"type": "maildir", "path": "outbox"},
        }
        for table, override in tables.items():
            if override is None:
                config.pop(table, None)
            elif table in config and table != "transport":
                config[table] = {**config[table], **override}
            else:
                config[table] = override
        config_path = root / "campaign.toml"
        write_toml(config_path, config)
        if extra:
            with config_path.open("a", encoding="utf-8") as handle:
                handle.write(extra)
        return CampaignFolder(root=root, config=config_path)

    return factory


@pytest.fixture
def cli() -> Callable[..., Result]:
    """Invoke the ``campaign`` command in-process; returns click's Result."""
    runner = CliRunner()

    def invoke(*args: str) -> Result:
        return runner.invoke(main, [str(a) for a in args], catch_exceptions=False)

    return invoke


def run_campaign(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None,
                 timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run ``python -m campaign_tool`` as a real subprocess, no terminal, no stdin."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "campaign_tool", *args], cwd=cwd,
                          env=full_env, capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL, check=False)


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    """A real aiosmtpd server on 127.0.0.1 (free port) with a recording handler."""
    with SmtpServer(RecordingHandler()) as server:
        yield server


def smtp_tables(server: SmtpServer, **send: Any) -> dict[str, Any]:
    """Config tables that point a campaign at ``server`` with fast test retries."""
    return {
        "transport": {"type": "smtp", "host": server.host, "port": server.port,
                      "security": "none", "timeout": 2.0, "local_hostname": "client.test"},
        "send": {"concurrency": 4, "retry_initial": 0.01, "retry_max": 0.05,
                 "max_attempts": 3, "stop_grace": 2.0, **send},
    }


def audit_entries(folder: CampaignFolder) -> list[dict[str, Any]]:
    """The parsed entries of a campaign's audit log."""
    path = folder.root / "test-campaign.audit.jsonl"
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
