"""From a campaign file to checked envelopes, one recipient at a time.

Two streaming passes over the recipient list, never holding rendered messages:

1. :func:`scan_recipients` validates every row and builds the compact indexes
   the checks need (the leak index, duplicates, a digest per row).
2. :func:`plan_messages` reads the list again and, per row, decides its fate
   (suppressed, duplicate, or a message), renders, builds and leak-checks the
   message and yields an :class:`Envelope` with exactly one recipient.

``preflight`` runs pass 2 to the end, keeping the findings and, for a send,
every checked item in a spool (``spool.py``) that the sending phase streams.
A row whose content differs from what pass 1 saw stops the run
(:class:`SourceChanged`).
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import hmac
import json
import secrets
import time
from array import array
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from pathlib import Path
from typing import Any, Protocol

from campaign_tool.addresses import AddressError, Mailbox, parse_address
from campaign_tool.config import CampaignConfig, load_config
from campaign_tool.errors import ConfigError, InputError, SourceChanged
from campaign_tool.findings import Finding, FindingLog, Severity
from campaign_tool.keys import load_key
from campaign_tool.message import MessageBuilder, MessageError
from campaign_tool.privacy import LeakIndex, LeakIndexBuilder, LeakScanner
from campaign_tool.recipients import (
    ColumnSpec,
    RawRow,
    Recipient,
    check_row,
    csv_header,
    missing_csv_columns,
    read_rows,
    read_suppression,
)
from campaign_tool.render import Renderer, RenderError
from campaign_tool.signing import DkimSigner, load_signer
from campaign_tool.unsubscribe import unsubscribe_token

_RESERVED = ("row", "recipient", "unsubscribe_url", "campaign_id")


class Fate(enum.StrEnum):
    """What happens to a row that is not sent."""

    DUPLICATE = "duplicate"
    SUPPRESSED = "suppressed"


@dataclass(frozen=True, slots=True)
class Envelope:
    """One message to one recipient: the only shape a transport ever receives.

    There is exactly one envelope recipient, and the ``To`` header inside
    ``data`` names that same address; nothing else can be expressed.
    """

    row: int
    line: int
    sender: str
    recipient: str
    address_key: str
    data: bytes
    message_id: str
    smtputf8: bool

    @property
    def domain(self) -> str:
        """The recipient's domain (ASCII form where there is one)."""
        return self.address_key.rpartition("@")[2]


@dataclass(frozen=True, slots=True)
class Skipped:
    """A row that is deliberately not sent, and why."""

    row: int
    line: int
    address_key: str
    fate: Fate
    duplicate_of: int | None = None


@dataclass(frozen=True, slots=True)
class Rejected:
    """A row whose message failed a check; ``finding`` says which and why."""

    row: int
    line: int
    address_key: str
    finding: Finding


PlanItem = Envelope | Skipped | Rejected


@dataclass
class Campaign:
    """Everything compiled once per campaign: config, templates, builder, keys."""

    config: CampaignConfig
    config_path: Path
    renderer: Renderer
    builder: MessageBuilder
    columns: ColumnSpec
    sender: Mailbox
    campaign_addresses: frozenset[str]
    unsubscribe_key: bytes | None
    audit_key: bytes | None = None
    notices: list[Finding] = field(default_factory=list)
    signer: DkimSigner | None = None
    """Signs every built message when the campaign has a [dkim] table."""
    allow_list: frozenset[str] | None = None
    """When set (a seed canary), only these address keys and ``@domain``s may be mailed."""
    audit_path_override: Path | None = None

    def allows(self, mailbox: Mailbox) -> bool:
        """True unless an allow-list is set and ``mailbox`` is not on it."""
        allow = self.allow_list
        return allow is None or mailbox.key in allow or f"@{mailbox.domain}" in allow

    @property
    def recipients_path(self) -> Path:
        """The recipient list file."""
        return self.config.recipients.path

    @property
    def id(self) -> str:
        """The campaign id from the config."""
        return self.config.campaign.id

    @property
    def audit_path(self) -> Path:
        """The audit log: configured, or ``<id>.audit.jsonl`` beside the config."""
        if self.audit_path_override is not None:
            return self.audit_path_override
        configured = self.config.audit.path
        return configured or self.config_path.resolve().parent / f"{self.id}.audit.jsonl"

    def message_id(self, address_key: str) -> str:
        """The recipient's Message-ID: the same on every run when a key is known.

        A message re-sent after an unknown outcome (``--resend-unknown``) then
        carries the same Message-ID, so receiving systems can drop the copy.
        """
        if self.audit_key is None:
            return self.builder.new_message_id()
        digest = hmac.new(self.audit_key, f"message-id\x00{self.id}\x00{address_key}".encode(),
                          hashlib.sha256).hexdigest()[:24]
        return f"<{digest}.{self.id}@{self.builder.domain}>"


def load_campaign(config_path: Path, *, for_sending: bool) -> Campaign:
    """Load the config, compile the templates, find the keys.

    With ``for_sending`` a missing unsubscribe key file is created and a
    missing key is an error; otherwise (lint, preview) a throwaway key is used
    and a warning says so. Raises :class:`ConfigError`.
    """
    config = load_config(config_path)
    notices: list[Finding] = []
    limits = config.limits
    unsubscribe = config.unsubscribe
    renderer = Renderer(config_file=config_path, subject=config.campaign.subject,
                        html=config.templates.html, text=config.templates.text,
                        unsubscribe_url=unsubscribe.url if unsubscribe else None,
                        max_output=limits.max_message_bytes, timeout=limits.render_timeout)
    sender = parse_address(config.sender.address)
    reply_to = parse_address(config.sender.reply_to) if config.sender.reply_to else None
    builder = MessageBuilder(sender=sender, sender_name=config.sender.name, reply_to=reply_to,
                             extra_headers=config.headers,
                             max_bytes=limits.max_message_bytes)
    key = None
    campaign_addresses = {*sender.forms, *(reply_to.forms if reply_to else ())}
    if unsubscribe is not None:
        if unsubscribe.mailto:
            campaign_addresses |= parse_address(unsubscribe.mailto).forms
        key = load_key(env_var=unsubscribe.key_env, key_file=unsubscribe.key_file,
                       create=for_sending, purpose="unsubscribe")
        if key is None:
            where = f"${unsubscribe.key_env}" + (
                f" or {unsubscribe.key_file}" if unsubscribe.key_file else "")
            if for_sending:
                raise ConfigError(f"{config_path}: key 'unsubscribe.key_env': no unsubscribe "
                                  f"key: set {where} (or set unsubscribe.key_file)")
            notices.append(Finding(
                "unsubscribe-key-missing",
                f"no unsubscribe key ({where}); tokens shown here use a throwaway key",
                file=config_path, severity=Severity.WARNING))
            key = secrets.token_bytes(32)
    recipients = config.recipients
    columns = ColumnSpec(recipients.email_column, recipients.name_column,
                         tuple(recipients.private_columns))
    audit_key = load_key(env_var=config.audit.key_env, key_file=config.audit.key_file,
                         create=for_sending, purpose="audit")
    signer = None
    if config.dkim is not None:
        signer = load_signer(domain=config.dkim.domain, selector=config.dkim.selector,
                             key_file=config.dkim.key_file, algorithm=config.dkim.algorithm,
                             config_file=config_path)
        notices.extend(signer.warnings)
        dkim_domain = config.dkim.domain.lower()
        if sender.domain != dkim_domain and not sender.domain.endswith("." + dkim_domain):
            notices.append(Finding(
                "dkim-alignment",
                f"the DKIM domain '{dkim_domain}' does not align with the From domain "
                f"'{sender.domain}', so the signature will not satisfy DMARC",
                file=config_path, severity=Severity.WARNING))
    return Campaign(config=config, config_path=config_path, renderer=renderer,
                    builder=builder, columns=columns, sender=sender,
                    campaign_addresses=frozenset(campaign_addresses),
                    unsubscribe_key=key, audit_key=audit_key, notices=notices, signer=signer)


def seed_campaign(campaign: Campaign) -> Campaign:
    """The same campaign aimed at its ``[canary]`` seed list, for a test send.

    Every seed must be on the allow-list (checked row by row in the scan), and
    the seed sends keep their own audit log, so the campaign's own list and log
    are never touched.
    """
    canary = campaign.config.canary
    if canary is None:
        raise ConfigError(f"{campaign.config_path}: --canary-seeds needs a [canary] table "
                          "with 'seeds' and 'allow'")
    allow: set[str] = set()
    for entry in canary.allow:
        probe = f"seed{entry}" if entry.startswith("@") else entry
        try:
            mailbox = parse_address(probe)
        except AddressError as error:
            raise ConfigError(f"{campaign.config_path}: key 'canary.allow': {entry!r} is "
                              f"neither an address nor an @domain: {error}") from None
        allow.add(f"@{mailbox.domain}" if entry.startswith("@") else mailbox.key)
    recipients = campaign.config.recipients.model_copy(
        update={"path": canary.seeds, "format": None})
    config = campaign.config.model_copy(update={"recipients": recipients})
    return dataclasses.replace(
        campaign, config=config, allow_list=frozenset(allow),
        audit_path_override=campaign.audit_path.with_name(
            f"{campaign.id}.seeds-{datetime.now(UTC):%Y%m%dT%H%M%S}.audit.jsonl"))


@dataclass
class Scan:
    """What pass 1 learned, compactly: enough to check and plan every row."""

    rows: int
    valid: int
    index: LeakIndex
    suppressed: frozenset[str]
    digests: array[int]


def scan_recipients(campaign: Campaign, findings: FindingLog) -> Scan:
    """Pass 1: validate every row and build the indexes. Records findings.

    Raises :class:`InputError` when the list cannot be read at all.
    """
    recipients = campaign.config.recipients
    path = recipients.path
    fmt = recipients.resolved_format
    if fmt == "csv" and path.exists():
        missing = missing_csv_columns(path, campaign.columns)
        if missing:
            header = csv_header(path) or []
            names = ", ".join(f"'{c}'" for c in missing)
            finding = Finding("recipients-missing-column",
                              f"the header has no column {names} (it has: "
                              f"{', '.join(header)})", file=path, line=1)
            raise InputError(finding.describe(), findings=[finding])
    suppressed: frozenset[str] = frozenset()
    if recipients.suppression is not None:
        suppressed, problems = read_suppression(recipients.suppression)
        findings.extend(problems)
    builder = LeakIndexBuilder(campaign.columns.private, campaign.config.limits.min_private_length)
    digests = array("Q")
    rows = valid = 0
    for raw in read_rows(path, fmt):
        rows += 1
        result = check_row(raw, campaign.columns)
        if isinstance(result, str):
            findings.add(Finding("recipient-invalid", result, file=path, line=raw.line,
                                 row=raw.number))
            digests.append(0)
            continue
        if not campaign.allows(result.mailbox):
            findings.add(Finding("canary-not-allowed",
                                 "not on the canary allow-list ([canary] allow): a test send "
                                 "goes only to allow-listed addresses", file=path,
                                 line=raw.line, row=raw.number))
            digests.append(0)
            continue
        if valid == 0:
            findings.extend(_shadowed_columns(result, path))
        valid += 1
        builder.add(result)
        digests.append(_digest(raw))
    if rows == 0:
        finding = Finding("recipients-empty", "the list has no recipients", file=path)
        raise InputError(finding.describe(), findings=[finding])
    for column, short in builder.short_values.items():
        sample = ", ".join(str(r) for r in short.rows)
        findings.add(Finding(
            "private-value-short",
            f"{short.count} value(s) of private column '{column}' are shorter than "
            f"{builder.min_private_length} characters and cannot be leak-checked "
            f"(rows {sample}{', ...' if short.count > len(short.rows) else ''})",
            file=path, severity=Severity.WARNING))
    index = builder.build()
    return Scan(rows=rows, valid=valid, index=index, suppressed=suppressed, digests=digests)


def _digest(raw: RawRow) -> int:
    fields = raw.fields or {}
    try:
        value = hash((tuple(fields), tuple(fields.values())))
    except TypeError:  # JSON lists and objects are not hashable
        value = hash(json.dumps(fields, sort_keys=True, default=str))
    return (value & ((1 << 64) - 1)) or 1


class _DateHeader:
    """The Date header value, formatted at most once a second."""

    def __init__(self) -> None:
        self._second = -1
        self._value = ""

    def __call__(self) -> str:
        now = int(time.time())
        if now != self._second:
            self._second = now
            self._value = format_datetime(datetime.fromtimestamp(now, UTC))
        return self._value


def plan_messages(campaign: Campaign, scan: Scan) -> Iterator[PlanItem]:
    """Pass 2: an :class:`Envelope`, :class:`Skipped` or :class:`Rejected` per valid row.

    Rows that pass 1 rejected yield nothing (they are reported by the scan).
    A row that differs from what pass 1 saw raises :class:`SourceChanged`.
    """
    path = campaign.recipients_path
    config = campaign.config
    scanner = LeakScanner(scan.index, campaign.campaign_addresses)
    date = _DateHeader()
    unsubscribe = config.unsubscribe
    mailto = f"mailto:{parse_address(unsubscribe.mailto).address}?subject=unsubscribe" \
        if unsubscribe and unsubscribe.mailto else None
    # The same in every message, but checked in each: a row's own data is exempt.
    static_parts = [("From", config.sender.name or ""),
                    ("extra headers", " ".join(config.headers.values()))]
    for raw in read_rows(path, config.recipients.resolved_format):
        if raw.number > len(scan.digests):
            raise SourceChanged(f"{path}: the list grew during the run (row {raw.number} is "
                                "new); nothing more is sent")
        expected = scan.digests[raw.number - 1]
        if expected == 0:
            continue  # invalid in pass 1, already reported
        if _digest(raw) != expected:
            raise SourceChanged(f"{path}:{raw.line}: row {raw.number} changed during the run; "
                                "nothing more is sent")
        recipient = check_row(raw, campaign.columns, validated=True)
        assert not isinstance(recipient, str)  # same content as pass 1, which accepted it
        key = recipient.mailbox.key
        if key in scan.suppressed:
            yield Skipped(recipient.row, recipient.line, key, Fate.SUPPRESSED)
            continue
        first = scan.index.first_row(key)
        if first is not None and first != recipient.row:
            yield Skipped(recipient.row, recipient.line, key, Fate.DUPLICATE, first)
            continue
        try:
            yield _build(campaign, recipient, scanner, date, mailto, static_parts)
        except (RenderError, MessageError, _LeakFound) as problem:
            yield Rejected(recipient.row, recipient.line, key,
                           _finding_for(problem, recipient, path))


def _shadowed_columns(recipient: Recipient, path: Path) -> list[Finding]:
    return [Finding("column-shadowed",
                    f"column '{name}' has the name of a built-in template variable, which "
                    f"wins; reach the column as row['{name}']", file=path, line=1,
                    severity=Severity.WARNING)
            for name in _RESERVED if name in recipient.fields]


class _LeakFound(Exception):
    def __init__(self, descriptions: list[str]) -> None:
        super().__init__("; ".join(descriptions))
        self.descriptions = descriptions


def _context(campaign: Campaign, recipient: Recipient) -> dict[str, Any]:
    context = dict(recipient.fields)
    context["row"] = recipient.fields
    context["recipient"] = {"email": recipient.mailbox.unicode, "name": recipient.name or ""}
    context["campaign_id"] = campaign.id
    return context


def _build(campaign: Campaign, recipient: Recipient, scanner: LeakScanner,
           date: _DateHeader, mailto: str | None,
           static_parts: list[tuple[str, str]]) -> Envelope:
    context = _context(campaign, recipient)
    renderer = campaign.renderer
    unsubscribe_uris: list[str] = []
    url = None
    if campaign.unsubscribe_key is not None:
        token = unsubscribe_token(campaign.unsubscribe_key, campaign.id, recipient.mailbox.key)
        url = renderer.render_unsubscribe_url({**context, "token": token})
        if url is not None:
            if not url.startswith("https://"):
                raise MessageError("unsubscribe-url-invalid",
                                   "the rendered unsubscribe URL does not start with https://")
            unsubscribe_uris.append(url)
        if mailto:
            unsubscribe_uris.append(mailto)
    context["unsubscribe_url"] = url or mailto or ""
    rendered = renderer.render(context)
    builder = campaign.builder
    built = builder.build(to=recipient.mailbox, to_name=recipient.name,
                          subject=rendered.subject, text=rendered.text, html=rendered.html,
                          date=date(), message_id=campaign.message_id(recipient.mailbox.key),
                          unsubscribe=unsubscribe_uris, one_click=url is not None)
    parts = [("Subject", rendered.subject), ("To", recipient.name or ""), *static_parts,
             ("List-Unsubscribe", " ".join(unsubscribe_uris)),
             ("text body", rendered.text or ""), ("HTML body", rendered.html or "")]
    leaks = scanner.scan(recipient, parts)
    if leaks:
        raise _LeakFound([leak.describe() for leak in leaks])
    data = campaign.signer.sign(built.data) if campaign.signer is not None else built.data
    return Envelope(row=recipient.row, line=recipient.line, sender=campaign.sender.address,
                    recipient=recipient.mailbox.address, address_key=recipient.mailbox.key,
                    data=data, message_id=built.message_id, smtputf8=built.smtputf8)


def _finding_for(problem: Exception, recipient: Recipient, path: Path) -> Finding:
    if isinstance(problem, RenderError):
        where = f" ({problem.file}:{problem.line})" if problem.file and problem.line else (
            f" ({problem.file})" if problem.file else "")
        return Finding(problem.code, problem.message + where, file=path, line=recipient.line,
                       row=recipient.row)
    if isinstance(problem, MessageError):
        return Finding(problem.code, problem.message, file=path, line=recipient.line,
                       row=recipient.row)
    assert isinstance(problem, _LeakFound)
    return Finding("privacy-leak", "; ".join(problem.descriptions), file=path,
                   line=recipient.line, row=recipient.row)


@dataclass
class PreflightReport:
    """The outcome of checking every message of a campaign without sending."""

    rows: int
    messages: int
    duplicates: int
    suppressed: int
    invalid: int
    findings: FindingLog
    seconds: float
    scan: Scan | None = None

    @property
    def ok(self) -> bool:
        """True when nothing stands in the way of sending."""
        return self.findings.errors == 0


class ItemSink(Protocol):
    """Where a send's preflight keeps each checked item (see ``spool.Spool``)."""

    def add(self, item: Envelope | Skipped) -> None:
        """Keep one item."""
        ...


def preflight(campaign: Campaign, *, keep_per_code: int = 100,
              keep: ItemSink | None = None) -> PreflightReport:
    """Render and check every message (streaming); send nothing.

    With ``keep``, every checked item (message bytes included) is handed to it
    in order, so a send can deliver exactly what was checked without rendering
    again. Raises :class:`InputError` for an unreadable list; everything else
    becomes findings in the report.
    """
    started = time.perf_counter()
    findings = FindingLog(keep_per_code)
    findings.extend(campaign.notices)
    scan = scan_recipients(campaign, findings)
    messages = duplicates = suppressed = 0
    path = campaign.recipients_path
    for item in plan_messages(campaign, scan):
        if keep is not None and not isinstance(item, Rejected):
            keep.add(item)
        if isinstance(item, Envelope):
            messages += 1
        elif isinstance(item, Rejected):
            findings.add(item.finding)
        elif item.fate is Fate.DUPLICATE:
            duplicates += 1
            findings.add(Finding(
                "recipient-duplicate", f"same address as row {item.duplicate_of} (compared "
                f"case-insensitively); sent once, to row {item.duplicate_of}",
                file=path, line=item.line, row=item.row, severity=Severity.WARNING))
        else:
            suppressed += 1
    invalid = scan.rows - messages - duplicates - suppressed
    return PreflightReport(rows=scan.rows, messages=messages, duplicates=duplicates,
                           suppressed=suppressed, invalid=invalid, findings=findings,
                           seconds=time.perf_counter() - started, scan=scan)
