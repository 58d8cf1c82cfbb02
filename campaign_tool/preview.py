"""``campaign preview``: exactly what given recipients will receive.

The messages shown are built by the same code path as a send (same index, same
checks), so a preview cannot differ from the real thing. With an output folder,
each message is written as an ``.eml`` file and an ``index.html`` shows them
side by side; remote content in the bodies is blocked there by a Content
Security Policy, as privacy-minded mail clients do.
"""

from __future__ import annotations

import functools
import html
import re
from collections.abc import Sequence
from dataclasses import dataclass
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

from campaign_tool.addresses import AddressError, parse_address
from campaign_tool.errors import ConfigError
from campaign_tool.findings import FindingLog
from campaign_tool.plan import (
    Campaign,
    Envelope,
    Fate,
    PlanItem,
    Rejected,
    plan_messages,
    scan_recipients,
)

SHOWN_HEADERS = ("From", "Reply-To", "To", "Subject", "Date", "Message-ID",
                 "List-Unsubscribe", "List-Unsubscribe-Post")


@dataclass(frozen=True)
class Preview:
    """One previewed row: its message, or why it gets none."""

    item: PlanItem

    @property
    def row(self) -> int:
        """The row in the recipient list."""
        return self.item.row

    @functools.cached_property
    def message(self) -> EmailMessage | None:
        """The message parsed back with the ``email`` package (display only, once)."""
        if not isinstance(self.item, Envelope):
            return None
        parsed = message_from_bytes(self.item.data, policy=policy.default)
        assert isinstance(parsed, EmailMessage)
        return parsed

    def headers(self) -> list[tuple[str, str]]:
        """The headers a reader cares about, decoded."""
        message = self.message
        if message is None:
            return []
        return [(name, str(message[name])) for name in SHOWN_HEADERS if name in message]

    def body(self, subtype: str) -> str | None:
        """The decoded ``text/<subtype>`` body, if the message has one."""
        message = self.message
        if message is None:
            return None
        part = message.get_body(preferencelist=(subtype,))
        if part is None or part.get_content_subtype() != subtype:
            return None
        content = part.get_content()
        assert isinstance(content, str)
        return content

    def status(self) -> str:
        """A one-line account of what happens to this row."""
        item = self.item
        if isinstance(item, Envelope):
            return f"row {item.row}: message to be sent"
        if isinstance(item, Rejected):
            return f"row {item.row}: NOT SENDABLE: {item.finding.message}"
        if item.fate is Fate.DUPLICATE:
            return f"row {item.row}: not sent: duplicate of row {item.duplicate_of}"
        return f"row {item.row}: not sent: on the suppression list"


def collect_previews(campaign: Campaign, *, count: int = 3,
                     addresses: Sequence[str] = ()) -> tuple[list[Preview], FindingLog,
                                                            list[str]]:
    """The previews asked for, the scan's findings, and addresses not found.

    With ``addresses``, those recipients (compared case-insensitively);
    otherwise the first ``count`` rows. The whole list is scanned first, so the
    leak check is the real one.
    """
    wanted: dict[str, str] = {}
    for address in addresses:
        try:
            wanted[parse_address(address).key] = address
        except AddressError as error:
            raise ConfigError(f"--recipient {address!r}: {error}") from None
    findings = FindingLog()
    findings.extend(campaign.notices)
    scan = scan_recipients(campaign, findings)
    previews: list[Preview] = []
    found: set[str] = set()
    for item in plan_messages(campaign, scan):
        if wanted:
            if item.address_key not in wanted:
                continue
            found.add(item.address_key)
            previews.append(Preview(item))
            if found == set(wanted):
                break
        else:
            previews.append(Preview(item))
            if len(previews) >= count:
                break
    missing = [shown for key, shown in wanted.items() if key not in found]
    return previews, findings, missing


def render_text(preview: Preview) -> str:
    """A preview as plain text: status, headers, then the text body (or HTML)."""
    lines = [f"── {preview.status()} " + "─" * 20]
    for name, value in preview.headers():
        lines.append(f"{name}: {value}")
    if isinstance(preview.item, Envelope):
        body = preview.body("plain")
        if body is None:
            html_body = preview.body("html") or ""
            body = "(HTML only; text shown without tags)\n" + _strip_tags(html_body)
        lines.append("")
        lines.append(body.rstrip("\n"))
    return "\n".join(lines) + "\n"


def _strip_tags(markup: str) -> str:
    text = re.sub(r"(?is)<(script|style)\b.*?</\1>", "", markup)
    text = re.sub(r"(?s)<[^>]+>", "", text)
    return html.unescape(re.sub(r"\n\s*\n+", "\n\n", text)).strip()


_CSP = ("default-src 'none'; style-src 'unsafe-inline'; img-src data:; "
        "frame-src 'self' about: data:")


def write_gallery(previews: Sequence[Preview], out_dir: Path, title: str) -> list[Path]:
    """Write one ``.eml`` per message and an ``index.html`` showing them all.

    Returns the files written. The gallery loads nothing from the network:
    its Content-Security-Policy (inherited by the ``srcdoc`` frames) blocks
    every remote image, font and script of the previewed bodies.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    cards: list[str] = []
    for number, preview in enumerate(previews, start=1):
        item = preview.item
        eml_name = None
        if isinstance(item, Envelope):
            eml_name = f"{number:03d}-row{item.row}.eml"
            (out_dir / eml_name).write_bytes(item.data)
            written.append(out_dir / eml_name)
        cards.append(_card(preview, eml_name))
    index = out_dir / "index.html"
    index.write_text(_GALLERY.format(title=html.escape(title), csp=_CSP,
                                     count=len(previews), cards="\n".join(cards)),
                     encoding="utf-8")
    written.append(index)
    return written


# Remote references in a body: shown as blocked, as privacy-minded mail clients do.
_REMOTE_IMG = re.compile(r"""(<img\b[^>]*?\bsrc\s*=\s*)(["'])\s*(?:https?:)?//[^"']*\2""",
                         re.IGNORECASE)
_REMOTE_REF = re.compile(r"""(?:src|href)\s*=\s*["']\s*(?:https?:)?//|url\(\s*["']?\s*"""
                         r"""(?:https?:)?//""", re.IGNORECASE)
_BLOCKED_IMAGE = ("data:image/svg+xml;utf8,<svg xmlns='http://www.w3.org/2000/svg' "
                  "width='160' height='40'><rect width='100%' height='100%' fill='%23eee' "
                  "stroke='%23999'/><text x='8' y='25' font-family='sans-serif' "
                  "font-size='12' fill='%23666'>remote image blocked</text></svg>")


def block_remote_content(markup: str) -> tuple[str, int]:
    """Replace remote images with a visible placeholder; count remote references.

    The gallery's Content-Security-Policy is what actually blocks every remote
    load; this makes the blocking visible, image by image.
    """
    remote = len(_REMOTE_REF.findall(markup))
    replaced = _REMOTE_IMG.sub(lambda m: f'{m.group(1)}"{_BLOCKED_IMAGE}" '
                                         'title="remote image blocked"', markup)
    return replaced, remote


def _card(preview: Preview, eml_name: str | None) -> str:
    esc = html.escape
    rows = "".join(f"<tr><th>{esc(n)}</th><td>{esc(v)}</td></tr>" for n, v in preview.headers())
    if not isinstance(preview.item, Envelope):
        return (f'<section class="card skipped" data-row="{preview.row}">'
                f"<h2>{esc(preview.status())}</h2></section>")
    html_body = preview.body("html")
    text_body = preview.body("plain")
    blocked_note = ""
    if html_body is not None:
        html_body, remote = block_remote_content(html_body)
        if remote:
            blocked_note = (f'<p class="blocked">{remote} remote reference(s) blocked: the '
                            "real message would load them from the network.</p>")
    frame = (f'<iframe class="html" sandbox title="HTML body of row {preview.row}" '
             f'srcdoc="{esc(html_body, quote=True)}"></iframe>' if html_body is not None
             else '<p class="none">(no HTML part)</p>')
    text = (f'<pre class="text">{esc(text_body)}</pre>' if text_body is not None
            else '<p class="none">(no text part)</p>')
    link = f'<a href="{esc(eml_name or "")}">{esc(eml_name or "")}</a>'
    return (f'<section class="card" data-row="{preview.row}">'
            f"<h2>{esc(preview.status())} · {link}</h2>"
            f'<table class="headers">{rows}</table>{blocked_note}'
            f'<div class="bodies">{frame}{text}</div></section>')


_GALLERY = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{csp}">
<title>Preview: {title}</title>
<style>
body {{ font: 14px/1.4 system-ui, sans-serif; margin: 1.5rem; background: #f4f4f5; }}
.card {{ background: #fff; border-radius: 8px; padding: 1rem; margin-bottom: 1.5rem;
         box-shadow: 0 1px 3px #0002; }}
.card h2 {{ font-size: 1rem; margin: 0 0 .5rem; }}
.headers th {{ text-align: left; padding-right: 1rem; color: #555; vertical-align: top; }}
.headers td {{ word-break: break-all; }}
.bodies {{ display: grid; grid-template-columns: 1fr 1fr; gap: 1rem; margin-top: 1rem; }}
iframe.html {{ width: 100%; height: 480px; border: 1px solid #ddd; background: #fff; }}
pre.text {{ white-space: pre-wrap; margin: 0; padding: .5rem; border: 1px solid #ddd;
            max-height: 480px; overflow: auto; }}
.skipped {{ opacity: .7; }}
.blocked {{ color: #92400e; background: #fef3c7; padding: .25rem .5rem; border-radius: 4px; }}
</style>
</head>
<body>
<h1>Preview: {title} ({count} rows)</h1>
<p>Remote content in these messages is blocked here, as a privacy-minded mail client would.</p>
{cards}
</body>
</html>
"""


def finding_lines(findings: FindingLog) -> list[str]:
    """Scan findings worth showing beside a preview (errors and warnings)."""
    return [f"{f.severity.value}: {f.describe()}" for f in findings]

