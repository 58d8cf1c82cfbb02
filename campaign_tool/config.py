"""The campaign file (TOML), validated by pydantic: ``load_config(path)``.

Unknown keys are errors, paths resolve relative to the file, and every error
names the file, the key (with its line when it can be found) and the reason.
A campaign file cannot ask for shared recipients: there is no key for To, Cc
or Bcc, and extra headers that name recipients are refused.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from campaign_tool.addresses import AddressError, parse_address
from campaign_tool.errors import ConfigError
from campaign_tool.findings import Finding
from campaign_tool.headers import MAX_HEADER_VALUE, is_valid_header_name, unsafe_character

# Headers that name recipients, or that would let a campaign file redirect or
# copy mail. Every message has exactly one recipient, from the recipient list.
RECIPIENT_HEADERS = frozenset({
    "to", "cc", "bcc", "delivered-to", "x-original-to", "envelope-to", "x-envelope-to",
    "apparently-to", "return-path", "disposition-notification-to", "return-receipt-to",
    "read-receipt-to", "x-confirm-reading-to", "errors-to", "mail-followup-to",
    "mail-reply-to",
})
SENDER_HEADERS = frozenset({"from", "sender", "reply-to"})
MANAGED_HEADERS = frozenset({
    "subject", "date", "message-id", "mime-version", "content-type",
    "content-transfer-encoding", "content-disposition", "list-unsubscribe",
    "list-unsubscribe-post", "dkim-signature", "received", "in-reply-to", "references",
})
SHARED_RECIPIENT_KEYS = frozenset({"to", "cc", "bcc", "recipients_cc", "recipients_bcc"})


def _resolve_path(value: Path, info: ValidationInfo) -> Path:
    base = (info.context or {}).get("base_dir")
    path = value.expanduser()
    if base is not None and not path.is_absolute():
        path = Path(base) / path
    return path


ConfigPath = Annotated[Path, AfterValidator(_resolve_path)]


def _single_address(value: str) -> str:
    try:
        return parse_address(value).address
    except AddressError as error:
        raise ValueError(f"not a single valid address: {error}") from None


def _header_safe(value: str) -> str:
    unsafe = unsafe_character(value)
    if unsafe:
        raise ValueError(f"contains {unsafe}")
    if len(value) > MAX_HEADER_VALUE:
        raise ValueError(f"is {len(value)} characters long; a header allows {MAX_HEADER_VALUE}")
    return value


Address = Annotated[str, AfterValidator(_single_address)]
HeaderText = Annotated[str, AfterValidator(_header_safe)]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=False)


class CampaignSection(_Section):
    """``[campaign]``: who this campaign is and what its subject says."""

    id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$",
                    description="Stable campaign identifier: names the audit log, keys tokens.")
    subject: str = Field(min_length=1, description="Jinja template of the Subject header.")


class SenderSection(_Section):
    """``[sender]``: the From (and optional Reply-To) of every message."""

    address: Address
    name: HeaderText | None = None
    reply_to: Address | None = None


class TemplatesSection(_Section):
    """``[templates]``: the bodies; at least one of ``html`` and ``text``."""

    html: ConfigPath | None = None
    text: ConfigPath | None = None

    @model_validator(mode="after")
    def _one_body_at_least(self) -> TemplatesSection:
        if self.html is None and self.text is None:
            raise ValueError("give at least one of 'html' and 'text'")
        return self


class RecipientsSection(_Section):
    """``[recipients]``: where the list is and which columns mean what."""

    path: ConfigPath
    format: Literal["csv", "json", "jsonl"] | None = Field(
        default=None, description="Default: from the file extension.")
    email_column: str = "email"
    name_column: str | None = None
    private_columns: list[str] = Field(default_factory=list)
    suppression: ConfigPath | None = None

    @model_validator(mode="after")
    def _format_known(self) -> RecipientsSection:
        if self.format is None and self.path.suffix.lower() not in _FORMATS_BY_SUFFIX:
            raise ValueError(
                f"cannot tell the format of '{self.path.name}' from its extension; "
                "set format = \"csv\", \"json\" or \"jsonl\"")
        return self

    @property
    def resolved_format(self) -> Literal["csv", "json", "jsonl"]:
        """The list's format, given or inferred from the extension."""
        return self.format or _FORMATS_BY_SUFFIX[self.path.suffix.lower()]


_FORMATS_BY_SUFFIX: dict[str, Literal["csv", "json", "jsonl"]] = {
    ".csv": "csv", ".json": "json", ".jsonl": "jsonl", ".ndjson": "jsonl",
}


class UnsubscribeSection(_Section):
    """``[unsubscribe]``: List-Unsubscribe (RFC 2369) and one-click (RFC 8058)."""

    url: str | None = Field(
        default=None,
        description="Jinja template of an https:// URL; {{ token }} is the recipient's token.")
    mailto: Address | None = None
    key_env: str = Field(default="CAMPAIGN_UNSUBSCRIBE_KEY",
                         description="Environment variable holding the token key.")
    key_file: ConfigPath | None = Field(
        default=None,
        description="Key file used when the variable is unset; created (mode 0600) if absent.")

    @field_validator("url")
    @classmethod
    def _https_only(cls, url: str | None) -> str | None:
        if url is not None and not url.lower().startswith("https://"):
            raise ValueError("must start with https:// (RFC 8058 one-click needs HTTPS)")
        return url

    @model_validator(mode="after")
    def _something_to_unsubscribe_with(self) -> UnsubscribeSection:
        if self.url is None and self.mailto is None:
            raise ValueError("give 'url', 'mailto' or both")
        return self


class MaildirTransport(_Section):
    """``[transport] type = "maildir"``: deliver into a local Maildir (no server)."""

    type: Literal["maildir"] = "maildir"
    path: ConfigPath = Field(default=Path("outbox"), validate_default=True,
                             description="Maildir folder; tmp/, new/ and cur/ are created.")


_LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "::1", "localhost.localdomain"})


class SmtpTransport(_Section):
    """``[transport] type = "smtp"``: deliver through an SMTP server with aiosmtplib."""

    type: Literal["smtp"]
    host: str = Field(min_length=1)
    port: int | None = Field(default=None, ge=1, le=65535,
                             description="Default: 587 (starttls), 465 (tls), 25 (none).")
    security: Literal["starttls", "tls", "none"] = Field(
        default="starttls", description="starttls, tls (implicit), or none (localhost only).")
    username: str | None = None
    password_env: str | None = Field(
        default=None, description="Environment variable holding the password.")
    verify_certificates: bool = True
    ca_file: ConfigPath | None = Field(default=None,
                                       description="Extra CA bundle to trust (PEM).")
    allow_insecure_remote: bool = Field(
        default=False, description="Allow security = \"none\" to a host other than localhost.")
    timeout: float = Field(default=30.0, gt=0, description="Seconds per SMTP command.")
    local_hostname: str | None = Field(default=None,
                                       description="EHLO name; default: this machine's FQDN.")

    @model_validator(mode="after")
    def _safe_choices(self) -> SmtpTransport:
        if self.security == "none" and self.host.lower() not in _LOCAL_HOSTS \
                and not self.allow_insecure_remote:
            raise ValueError(f"security = \"none\" sends in plaintext to {self.host}; it is "
                             "allowed only for localhost unless allow_insecure_remote = true")
        if self.username is not None and self.password_env is None:
            raise ValueError("a username needs password_env (the password never goes in "
                             "the campaign file)")
        if self.password_env is not None and self.username is None:
            raise ValueError("password_env needs a username")
        return self

    @property
    def resolved_port(self) -> int:
        """The port, given or implied by the security mode."""
        return self.port or {"starttls": 587, "tls": 465, "none": 25}[self.security]


Transport = Annotated[MaildirTransport | SmtpTransport, Field(discriminator="type")]


class SendSection(_Section):
    """``[send]``: how fast and how persistently to deliver."""

    concurrency: int = Field(default=8, ge=1, le=128,
                             description="Connections used in parallel.")
    messages_per_connection: int = Field(default=100, ge=1,
                                         description="Messages before reconnecting.")
    rate: float | None = Field(default=None, gt=0,
                               description="Messages per second, overall (smooth).")
    domain_rate: float | None = Field(default=None, gt=0,
                                      description="Messages per second to each domain.")
    max_attempts: int = Field(default=5, ge=1, le=50)
    max_retry_seconds: float = Field(default=300.0, gt=0,
                                     description="Give up retrying one message after this.")
    retry_initial: float = Field(default=1.0, gt=0, description="First retry wait (s).")
    retry_max: float = Field(default=60.0, gt=0, description="Longest retry wait (s).")
    stop_grace: float = Field(default=30.0, ge=0,
                              description="Seconds in-flight messages get after Ctrl-C.")


class BreakerSection(_Section):
    """``[breaker]``: halt when permanent failures pass a rate over recent messages."""

    window: int = Field(default=200, ge=1)
    threshold: float = Field(default=0.2, gt=0, le=1)
    min_messages: int = Field(default=20, ge=1,
                              description="Outcomes needed before the breaker may trip.")


class AuditSection(_Section):
    """``[audit]``: where the audit log goes and how addresses are kept out of it."""

    path: ConfigPath | None = Field(
        default=None, description="Default: <campaign id>.audit.jsonl beside the config.")
    key_env: str = "CAMPAIGN_AUDIT_KEY"
    key_file: ConfigPath = Field(default=Path(".keys/audit.key"), validate_default=True)
    cleartext: bool = Field(default=False,
                            description="Write addresses in clear beside the pseudonyms.")


class DkimSection(_Section):
    """``[dkim]``: sign every message (RFC 6376; Ed25519 per RFC 8463)."""

    domain: str = Field(max_length=253,
                        pattern=r"^([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}$",
                        description="The signing domain (d=).")
    selector: str = Field(pattern=r"^[A-Za-z0-9]([A-Za-z0-9._-]{0,62})$",
                          description="The selector (s=): <selector>._domainkey.<domain>.")
    key_file: ConfigPath = Field(description="PEM RSA key, or dknewkey's base64 Ed25519 key.")
    algorithm: Literal["rsa-sha256", "ed25519-sha256"] = "rsa-sha256"


class CanarySection(_Section):
    """``[canary]``: a seed list for test sends, every address on an allow-list."""

    seeds: ConfigPath = Field(description="A recipient list with the campaign's columns.")
    allow: list[str] = Field(min_length=1, description="Addresses or @domains allowed.")

    @field_validator("allow")
    @classmethod
    def _addresses_or_domains(cls, allow: list[str]) -> list[str]:
        for entry in allow:
            try:
                parse_address(f"seed{entry}" if entry.startswith("@") else entry)
            except AddressError as error:
                raise ValueError(f"{entry!r} is neither an address nor an @domain: "
                                 f"{error}") from None
        return allow

    @field_validator("seeds")
    @classmethod
    def _known_format(cls, seeds: Path) -> Path:
        if seeds.suffix.lower() not in _FORMATS_BY_SUFFIX:
            raise ValueError(f"'{seeds.name}': use a .csv, .json or .jsonl seed list")
        return seeds


class LimitsSection(_Section):
    """``[limits]``: bounds that keep one bad template or row from hurting the run."""

    max_message_bytes: int = Field(default=10_000_000, ge=1_000)
    render_timeout: float = Field(default=5.0, gt=0, description="Seconds per message.")
    min_private_length: int = Field(
        default=3, ge=1,
        description="Private values shorter than this cannot be leak-checked (a warning).")


class CampaignConfig(_Section):
    """A whole campaign file, validated, with paths resolved."""

    campaign: CampaignSection
    sender: SenderSection
    templates: TemplatesSection
    recipients: RecipientsSection
    headers: dict[str, HeaderText] = Field(default_factory=dict)
    unsubscribe: UnsubscribeSection | None = None
    # Defaults are validated like given tables, so their paths resolve too.
    transport: Transport = Field(default_factory=lambda: {"type": "maildir"},
                                 validate_default=True)
    send: SendSection = Field(default_factory=dict, validate_default=True)
    breaker: BreakerSection = Field(default_factory=dict, validate_default=True)
    audit: AuditSection = Field(default_factory=dict, validate_default=True)
    canary: CanarySection | None = None
    dkim: DkimSection | None = None
    limits: LimitsSection = Field(default_factory=dict, validate_default=True)

    @field_validator("headers")
    @classmethod
    def _no_recipient_headers(cls, headers: dict[str, str]) -> dict[str, str]:
        seen: set[str] = set()
        for name in headers:
            lower = name.lower()
            if not is_valid_header_name(name):
                raise ValueError(f"'{name}' is not a valid header name")
            if lower in RECIPIENT_HEADERS or lower.startswith("resent-"):
                raise ValueError(
                    f"'{name}' names recipients; every message has exactly one recipient, "
                    "taken from the recipient list")
            if lower in SENDER_HEADERS:
                raise ValueError(f"'{name}' is set from [sender], not from [headers]")
            if lower in MANAGED_HEADERS:
                raise ValueError(f"'{name}' is written by campaign_tool itself")
            if lower in seen:
                raise ValueError(f"'{name}' is given twice")
            seen.add(lower)
        return headers

    @model_validator(mode="after")
    def _columns_distinct(self) -> CampaignConfig:
        rec = self.recipients
        if rec.name_column is not None and rec.name_column == rec.email_column:
            raise ValueError("recipients.name_column must differ from email_column")
        return self


def load_config(path: Path) -> CampaignConfig:
    """Read and validate a campaign file.

    Raises :class:`ConfigError` carrying one finding per problem, each naming
    the file, the key, its line where found, and the reason.
    """
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"{path}: cannot read: {error}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        line_match = re.search(r"at line (\d+)", str(error))
        finding = Finding("config-syntax", f"not valid TOML: {error}", file=path,
                          line=int(line_match.group(1)) if line_match else None)
        raise ConfigError(finding.describe(), findings=[finding]) from None
    lines = _key_lines(text)
    findings = _shared_recipient_keys(data, path, lines)
    if not findings:
        try:
            return CampaignConfig.model_validate(
                data, context={"base_dir": path.resolve().parent})
        except ValidationError as error:
            findings = [_finding_from_error(e, path, lines) for e in error.errors()]
    summary = "\n".join(f.describe() for f in findings)
    raise ConfigError(summary, findings=findings)


def _shared_recipient_keys(data: dict[str, Any], path: Path,
                           lines: dict[tuple[str, ...], int]) -> list[Finding]:
    """Refuse To/Cc/Bcc keys anywhere with a message that says why."""
    findings = []

    def walk(table: dict[str, Any], prefix: tuple[str, ...]) -> None:
        for key, value in table.items():
            here = (*prefix, key)
            if key.lower() in SHARED_RECIPIENT_KEYS and prefix != ("headers",):
                findings.append(Finding(
                    "config-shared-recipients",
                    f"key '{'.'.join(here)}': shared To/Cc/Bcc recipients are refused; "
                    "every message goes to exactly one recipient from the recipient list",
                    file=path, line=_line_for(here, lines)))
            elif isinstance(value, dict):
                walk(value, here)

    walk(data, ())
    return findings


def _finding_from_error(error: Any, path: Path, lines: dict[tuple[str, ...], int]) -> Finding:
    loc = tuple(str(part) for part in error["loc"])
    if len(loc) > 1 and loc[0] == "transport" and loc[1] in ("smtp", "maildir"):
        loc = loc[:1] + loc[2:]  # the discriminator's tag is not a key in the file
    key = ".".join(loc) or "(top level)"
    kind = error["type"]
    if kind == "extra_forbidden":
        message = f"key '{key}': unknown key"
    elif kind == "missing":
        message = f"key '{key}': required but missing"
    else:
        reason = error["msg"].removeprefix("Value error, ")
        message = f"key '{key}': {reason}"
    return Finding("config-invalid", message, file=path, line=_line_for(loc, lines))


def _line_for(loc: tuple[str, ...], lines: dict[tuple[str, ...], int]) -> int | None:
    """The line of the deepest key of ``loc`` that appears in the file."""
    for end in range(len(loc), 0, -1):
        if loc[:end] in lines:
            return lines[loc[:end]]
    return None


_TABLE = re.compile(r"^\s*\[\s*([^\[\]]+?)\s*\]\s*(#.*)?$")
_KEY = re.compile(r"""^\s*("[^"]*"|'[^']*'|[A-Za-z0-9_.-]+)\s*=""")


def _key_lines(text: str) -> dict[tuple[str, ...], int]:
    """Map dotted keys to the line that defines them (good enough for messages)."""
    lines: dict[tuple[str, ...], int] = {}
    table: tuple[str, ...] = ()
    for number, line in enumerate(text.splitlines(), start=1):
        if match := _TABLE.match(line):
            table = tuple(_unquote(p) for p in match.group(1).split("."))
            lines.setdefault(table, number)
        elif match := _KEY.match(line):
            key = match.group(1)
            parts = (_unquote(key),) if key[0] in "\"'" else tuple(key.split("."))
            lines.setdefault((*table, *parts), number)
    return lines


def _unquote(part: str) -> str:
    part = part.strip()
    return part[1:-1] if len(part) >= 2 and part[0] == part[-1] and part[0] in "\"'" else part
