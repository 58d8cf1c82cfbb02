"""One address per value: every trick to smuggle a second recipient is refused."""

from __future__ import annotations

import pytest

from campaign_tool.addresses import AddressError, parse_address


@pytest.mark.parametrize(("value", "reason"), [
    ("bob@example.test, carol@example.test", "several addresses"),
    ("bob@example.test; carol@example.test", "several addresses"),
    ('"a@x.test" <b@y.test>', "display name"),
    ("Bob <bob@example.test>", "display name"),
    ("undisclosed-recipients:;", "group syntax"),
    ("friends: a@x.test, b@y.test;", "group syntax"),
    ("bob@example.test\nBcc: eve@evil.test", "line break"),
    ("bob@example.test\r\n", "carriage return"),
    ("bob@exam\x00ple.test", "NUL"),
    ("bob@exam ple.test", "spaces"),
    (" bob@example.test", "spaces before or after"),
    ("", "empty"),
    ("bob.example.test", "no '@'"),
    ("a@b@example.test", "more than one '@'"),
    ("bob@localhost", "period"),
])
def test_value_that_is_not_exactly_one_address_is_refused(value: str, reason: str) -> None:
    with pytest.raises(AddressError, match=reason):
        parse_address(value)


@pytest.mark.parametrize("value", [None, 42, ["a@x.test"], {"a": 1}])
def test_non_text_value_is_refused(value: object) -> None:
    with pytest.raises(AddressError, match="must be text"):
        parse_address(value)


def test_plain_address_keeps_its_local_part_case_but_keys_lower_case() -> None:
    mailbox = parse_address("Alice.Smith@Example.TEST")
    assert mailbox.address == "Alice.Smith@example.test"
    assert mailbox.key == "alice.smith@example.test"
    assert not mailbox.smtputf8


def test_internationalised_domain_goes_on_the_wire_as_an_a_label() -> None:
    mailbox = parse_address("jose@exämple.test")
    assert mailbox.address == "jose@xn--exmple-cua.test"
    assert not mailbox.smtputf8
    assert "jose@exämple.test" in mailbox.forms


def test_non_ascii_local_part_needs_smtputf8() -> None:
    mailbox = parse_address("josé@exämple.test")
    assert mailbox.smtputf8
    assert mailbox.address == "josé@exämple.test"
