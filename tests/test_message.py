"""The fast message builder produces standards-correct messages with one recipient."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from campaign_tool.addresses import parse_address
from campaign_tool.message import MessageBuilder, MessageError
from tests.conftest import body_text, parse

SENDER = parse_address("news@sender.test")
BODY_TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cs",),
                                           blacklist_characters="\x00"), max_size=3000)


def build(**overrides: object) -> bytes:
    builder = MessageBuilder(sender=SENDER, sender_name="Sender News",
                             reply_to=parse_address("help@sender.test"),
                             extra_headers={"X-Campaign-Id": "c1"})
    arguments: dict[str, object] = {
        "to": parse_address("alice@example.test"), "to_name": "Alice Martin",
        "subject": "Hello Alice", "text": "Hi Alice\n", "html": "<p>Hi Alice</p>\n",
        "date": "Sun, 22 Nov 2026 10:00:00 +0000", "message_id": "<id1@sender.test>",
        "unsubscribe": ["https://sender.test/u?t=abc", "mailto:u@sender.test"],
        "one_click": True}
    arguments.update(overrides)
    return builder.build(**arguments).data  # type: ignore[arg-type]


def test_message_names_exactly_one_recipient_and_no_cc_or_bcc() -> None:
    message = parse(build())
    assert [a.addr_spec for a in message["To"].addresses] == ["alice@example.test"]
    for header in ("Cc", "Bcc", "Resent-To", "Delivered-To"):
        assert header not in message
    assert len(message.get_all("To")) == 1


def test_message_carries_the_required_headers() -> None:
    message = parse(build())
    for header in ("From", "To", "Subject", "Date", "Message-ID", "MIME-Version",
                   "Reply-To", "X-Campaign-Id"):
        assert message[header], header
    assert message["Message-ID"] == "<id1@sender.test>"
    assert message["From"].addresses[0].display_name == "Sender News"


def test_text_and_html_make_multipart_alternative_in_utf8() -> None:
    message = parse(build(text="Grüße, Zoë\n", html="<p>Grüße, Zoë</p>\n"))
    assert message.get_content_type() == "multipart/alternative"
    assert body_text(message, "plain") == "Grüße, Zoë\n"
    assert body_text(message, "html") == "<p>Grüße, Zoë</p>\n"
    plain = message.get_body(("plain",))
    assert plain is not None
    assert plain.get_content_charset() == "utf-8"


@pytest.mark.parametrize(("text", "html", "kind"), [
    ("only text\n", None, "text/plain"), (None, "<p>only html</p>", "text/html")])
def test_single_body_is_a_single_part(text: str | None, html: str | None, kind: str) -> None:
    assert parse(build(text=text, html=html)).get_content_type() == kind


def test_list_unsubscribe_offers_one_click_per_rfc_8058() -> None:
    message = parse(build())
    assert message["List-Unsubscribe"] == (
        "<https://sender.test/u?t=abc>, <mailto:u@sender.test>")
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"


def test_without_https_url_there_is_no_one_click_header() -> None:
    message = parse(build(unsubscribe=["mailto:u@sender.test"], one_click=False))
    assert "List-Unsubscribe-Post" not in message


@settings(max_examples=150, deadline=None)
@given(text=BODY_TEXT, html=BODY_TEXT)
def test_any_body_survives_encoding_and_keeps_lines_within_rfc_5322(text: str,
                                                                       html: str) -> None:
    data = build(text=text, html=html)
    assert all(len(line) <= 998 for line in data.split(b"\r\n"))
    assert b"\n" not in data.replace(b"\r\n", b"")
    message = parse(data)
    normalized = {t: t.replace("\r\n", "\n").replace("\r", "\n") for t in (text, html)}
    assert body_text(message, "plain") == normalized[text]
    assert body_text(message, "html") == normalized[html]
    assert not [d for part in message.walk() for d in part.defects]


def test_long_lines_are_sent_quoted_printable() -> None:
    data = build(text="x" * 5000 + "\n", html=None)
    assert b"quoted-printable" in data
    assert max(len(line) for line in data.split(b"\r\n")) <= 78


def test_subject_with_a_line_break_is_refused_as_header_injection() -> None:
    with pytest.raises(MessageError, match="line break") as caught:
        build(subject="Hello Alice\nBcc: eve@evil.test")
    assert caught.value.code == "header-injection"


def test_display_name_with_nul_is_refused() -> None:
    with pytest.raises(MessageError, match="NUL"):
        build(to_name="Alice\x00")


def test_over_long_subject_is_refused() -> None:
    with pytest.raises(MessageError, match="998") as caught:
        build(subject="a" * 2000)
    assert caught.value.code == "header-too-long"


def test_body_with_nul_is_refused() -> None:
    with pytest.raises(MessageError, match="NUL"):
        build(text="a\x00b")


def test_message_over_the_size_limit_is_refused() -> None:
    builder = MessageBuilder(sender=SENDER, max_bytes=1000)
    with pytest.raises(MessageError, match="limit"):
        builder.build(to=parse_address("a@example.test"), to_name=None, subject="s",
                      text="x" * 2000, html=None, date="Sun, 22 Nov 2026 10:00:00 +0000",
                      message_id="<a@sender.test>")


@pytest.mark.parametrize("uri", ["https://sender.test/u?t=a b",
                                 "https://sender.test/u>,<mailto:eve@evil.test",
                                 "https://sender.test/u\r\nBcc: eve@evil.test"])
def test_unsubscribe_url_that_could_break_the_header_is_refused(uri: str) -> None:
    with pytest.raises(MessageError):
        build(unsubscribe=[uri])


def test_smtputf8_recipient_is_flagged_for_the_transport() -> None:
    builder = MessageBuilder(sender=SENDER)
    built = builder.build(to=parse_address("josé@exämple.test"), to_name="José",
                          subject="Olá", text="oi", html=None,
                          date="Sun, 22 Nov 2026 10:00:00 +0000", message_id="<a@b.test>")
    assert built.smtputf8
    assert parse(built.data)["To"].addresses[0].addr_spec == "josé@exämple.test"
