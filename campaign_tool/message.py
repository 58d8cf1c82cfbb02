"""Build one message's bytes: headers, MIME structure, List-Unsubscribe.

``email.message.EmailMessage`` costs 0.4-1.3 ms a message (FACTS.md), most of
it re-parsing headers it was just given. This builder formats the headers that
are the same for every recipient once per campaign, and per recipient encodes
only To, Subject, Date, Message-ID and List-Unsubscribe, plus the bodies with
``binascii``'s C quoted-printable encoder. The tests parse its output with the
``email`` package to prove the fast path is also the correct one.
"""

from __future__ import annotations

import binascii
import re
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from campaign_tool.addresses import Mailbox
from campaign_tool.headers import (
    MAX_HARD_LINE,
    MAX_HEADER_VALUE,
    encode_list,
    encode_mailbox,
    encode_unstructured,
    longest_line,
    unsafe_character,
)

# Characters that would end or split a <URI> inside List-Unsubscribe.
_URI_BREAKERS = re.compile(r'[ <>",]|[^\x00-\x7f]')


class MessageError(Exception):
    """A message cannot be built as asked; ``code`` and ``message`` say why."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


@dataclass(frozen=True, slots=True)
class BuiltMessage:
    """A message ready for any transport: its bytes and what the envelope needs."""

    data: bytes
    message_id: str
    smtputf8: bool


class MessageBuilder:
    """Formats one campaign's messages; the fixed headers are encoded once here."""

    def __init__(self, *, sender: Mailbox, sender_name: str | None = None,
                 reply_to: Mailbox | None = None,
                 extra_headers: Mapping[str, str] | None = None,
                 max_bytes: int = 10_000_000) -> None:
        self.sender = sender
        self.max_bytes = max_bytes
        self.domain = sender.domain
        fixed = encode_mailbox("From", sender.address, sender_name)
        if reply_to is not None:
            fixed += encode_mailbox("Reply-To", reply_to.address, None)
        self._from_block = fixed
        tail = "MIME-Version: 1.0\r\n"
        for name, value in (extra_headers or {}).items():
            tail += encode_unstructured(name, value)
        self._tail_block = tail
        self._fixed_smtputf8 = sender.smtputf8 or (reply_to is not None and reply_to.smtputf8)
        # "=_" can never occur in quoted-printable output ('=' is always followed
        # by a hex digit or a line break there); 7bit parts are checked.
        self._boundary = "=_" + secrets.token_hex(16)

    def new_message_id(self) -> str:
        """A fresh, globally unique Message-ID in the sender's domain."""
        return f"<{secrets.token_hex(16)}@{self.domain}>"

    def build(self, *, to: Mailbox, to_name: str | None, subject: str, text: str | None,
              html: str | None, date: str, message_id: str,
              unsubscribe: Sequence[str] = (), one_click: bool = False) -> BuiltMessage:
        """Encode one message. Raises :class:`MessageError` on an unusable header.

        ``unsubscribe`` lists the List-Unsubscribe URIs (https and/or mailto);
        ``one_click`` adds ``List-Unsubscribe-Post`` (RFC 8058), which needs an
        https URI among them.
        """
        _check_header_value("Subject", subject)
        if to_name is not None:
            _check_header_value("the To display name", to_name)
        for uri in unsubscribe:
            _check_uri(uri)
        head = (f"Date: {date}\r\n{self._from_block}"
                + encode_mailbox("To", to.address, to_name)
                + encode_unstructured("Subject", subject)
                + f"Message-ID: {message_id}\r\n")
        if unsubscribe:
            head += encode_list("List-Unsubscribe", [f"<{uri}>" for uri in unsubscribe])
            if one_click:
                head += "List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n"
        head += self._tail_block
        if longest_line(head) > MAX_HARD_LINE:
            raise MessageError("header-too-long",
                               f"a header line would exceed RFC 5322's {MAX_HARD_LINE} "
                               "characters")
        try:
            data = head.encode("utf-8") + self._body(text, html)
        except UnicodeEncodeError:
            raise MessageError("invalid-text", "the message contains a lone surrogate "
                               "(broken Unicode in the data)") from None
        if len(data) > self.max_bytes:
            raise MessageError("message-too-large",
                               f"the message is {len(data):,} bytes; the limit is "
                               f"{self.max_bytes:,} ([limits] max_message_bytes)")
        smtputf8 = to.smtputf8 or self._fixed_smtputf8
        return BuiltMessage(data=data, message_id=message_id, smtputf8=smtputf8)

    def _body(self, text: str | None, html: str | None) -> bytes:
        if text is not None and html is not None:
            boundary = self._boundary
            text_cte, text_bytes = _encode_body(text, boundary)
            html_cte, html_bytes = _encode_body(html, boundary)
            return (
                f'Content-Type: multipart/alternative; boundary="{boundary}"\r\n\r\n'
                f"--{boundary}\r\n"
                f'Content-Type: text/plain; charset="utf-8"\r\n'
                f"Content-Transfer-Encoding: {text_cte}\r\n\r\n"
            ).encode("ascii") + text_bytes + (
                f"\r\n--{boundary}\r\n"
                f'Content-Type: text/html; charset="utf-8"\r\n'
                f"Content-Transfer-Encoding: {html_cte}\r\n\r\n"
            ).encode("ascii") + html_bytes + f"\r\n--{boundary}--\r\n".encode("ascii")
        subtype, content = ("html", html) if html is not None else ("plain", text or "")
        cte, encoded = _encode_body(content, None)
        return (f'Content-Type: text/{subtype}; charset="utf-8"\r\n'
                f"Content-Transfer-Encoding: {cte}\r\n\r\n").encode("ascii") + encoded


def _check_header_value(what: str, value: str) -> None:
    unsafe = unsafe_character(value)
    if unsafe:
        raise MessageError("header-injection",
                           f"{what} contains {unsafe}, which must never reach a header")
    if len(value) > MAX_HEADER_VALUE:
        raise MessageError("header-too-long",
                           f"{what} is {len(value):,} characters; the limit is "
                           f"{MAX_HEADER_VALUE}")


def _check_uri(uri: str) -> None:
    unsafe = unsafe_character(uri)
    if unsafe:
        raise MessageError("header-injection",
                           f"the unsubscribe URL contains {unsafe}, which must never reach "
                           "a header")
    bad_match = _URI_BREAKERS.search(uri)
    if bad_match is not None:
        bad = bad_match.group()
        shown = "a space" if bad == " " else f"'{bad}'"
        raise MessageError("unsubscribe-url-invalid",
                           f"the unsubscribe URL contains {shown}; percent-encode data in "
                           "it with |urlencode")


def _encode_body(content: str, boundary: str | None) -> tuple[str, bytes]:
    """A body part as (Content-Transfer-Encoding, bytes with CRLF line ends).

    7bit when it is ASCII, its lines fit RFC 5322's 998 characters and it
    cannot be mistaken for a boundary; quoted-printable otherwise.
    """
    if "\x00" in content:
        raise MessageError("body-nul", "a body contains a NUL character")
    if "\r" in content:
        content = content.replace("\r\n", "\n").replace("\r", "\n")
    raw = content.encode("utf-8")
    if raw.isascii() and (boundary is None or boundary not in content) and (
            len(raw) <= MAX_HARD_LINE or max(map(len, raw.split(b"\n"))) <= MAX_HARD_LINE):
        return "7bit", raw.replace(b"\n", b"\r\n")
    encoded = binascii.b2a_qp(raw, quotetabs=False, istext=True, header=False)
    return "quoted-printable", encoded.replace(b"\n", b"\r\n")
