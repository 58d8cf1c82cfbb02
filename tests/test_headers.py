"""Header encoding: folded within RFC 5322's limits and decoded back exactly."""

from __future__ import annotations

from email.header import decode_header, make_header

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from campaign_tool.headers import (
    MAX_LINE,
    encode_mailbox,
    encode_unstructured,
    unsafe_character,
)
from tests.conftest import parse

HEADER_TEXT = st.text(
    alphabet=st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp"),
                           blacklist_characters="\x85"),
    min_size=1, max_size=300)


def _decoded(header_block: str, name: str) -> str:
    message = parse((header_block + "\r\nbody\r\n").encode("utf-8"))
    assert not message.defects, message.defects
    return str(message[name])


@pytest.mark.parametrize("char", ["\n", "\r", "\x00", "\t", "\x7f", "\x85", "\u2028",
                                  "\u2029", "\x1b"])
def test_line_breaking_and_control_characters_are_unsafe(char: str) -> None:
    assert unsafe_character(f"Hello{char}Bcc: eve@evil.test") is not None


def test_ordinary_text_is_safe() -> None:
    assert unsafe_character("Zoë's «offer» — 50% off") is None


@settings(max_examples=300, deadline=None)
@given(HEADER_TEXT)
def test_subject_round_trips_through_the_email_parser(subject: str) -> None:
    block = encode_unstructured("Subject", subject)
    assert all(len(line) <= MAX_LINE for line in block.split("\r\n"))
    assert _decoded(block, "Subject") == subject


@settings(max_examples=300, deadline=None)
@given(HEADER_TEXT.filter(lambda s: "@" not in s and "<" not in s and ">" not in s
                          and s.strip() == s and s))
def test_display_name_round_trips_and_names_one_mailbox(name: str) -> None:
    block = encode_mailbox("To", "user@example.test", name)
    message = parse((block + "\r\nbody\r\n").encode("utf-8"))
    addresses = message["To"].addresses
    assert len(addresses) == 1
    assert addresses[0].addr_spec == "user@example.test"
    value = block.split(": ", 1)[1].strip()
    if value.startswith("=?"):
        # headerregistry mangles white space between encoded-words in a phrase;
        # decode_header follows RFC 2047 exactly.
        decoded = str(make_header(decode_header(value)))
        assert decoded == f"{name} <user@example.test>" or decoded == f"{name}<user@example.test>"
    else:
        assert addresses[0].display_name == name


def test_long_ascii_subject_is_folded_at_spaces() -> None:
    subject = "word " * 40 + "end"
    block = encode_unstructured("Subject", subject)
    assert block.count("\r\n") > 1
    assert "=?" not in block
    assert _decoded(block, "Subject") == subject


def test_text_that_looks_like_an_encoded_word_is_encoded() -> None:
    subject = "=?utf-8?b?SGk=?= is not a greeting"
    assert _decoded(encode_unstructured("Subject", subject), "Subject") == subject
