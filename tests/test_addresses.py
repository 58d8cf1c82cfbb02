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


# The fast paths must agree with email-validator exactly: it is the oracle.
from email_validator import EmailNotValidError, validate_email  # noqa: E402
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from campaign_tool.addresses import _plain_address  # noqa: E402

_ATOM = st.text(alphabet="abcXYZ019_+-.!#$%&'*/=?^`{|}~", min_size=0, max_size=70)
_LABEL = st.text(alphabet="abcXY019-", min_size=0, max_size=66)
_TLD = st.sampled_from(["test", "com", "org", "local", "localhost", "invalid", "onion",
                        "arpa", "c0m", "x", "museum", "COM", "xn--p1ai", "a" * 64])
_ADDRESS = st.builds(lambda local, labels, tld: f"{local}@{'.'.join([*labels, tld])}",
                     _ATOM, st.lists(_LABEL, min_size=0, max_size=4), _TLD)
# Mostly inside the fast subset, edges included (long parts, hyphens, case).
_PLAINISH = st.builds(
    lambda parts, labels, tld: f"{'.'.join(parts)}@{'.'.join([*labels, tld])}",
    st.lists(st.text(alphabet="aZ09_+-", min_size=1, max_size=40), min_size=1, max_size=3),
    st.lists(st.from_regex(r"[a-zA-Z0-9]([a-zA-Z0-9-]{0,62}[a-zA-Z0-9])?", fullmatch=True),
             min_size=1, max_size=5), _TLD)


def _oracle(value: str) -> tuple[str, str, bool] | None:
    try:
        result = validate_email(value, check_deliverability=False, test_environment=True,
                                allow_display_name=False, allow_quoted_local=False,
                                allow_domain_literal=False, allow_empty_local=False)
    except EmailNotValidError:
        return None
    wire = result.ascii_email or result.normalized
    return wire, result.normalized, result.ascii_email is None


@settings(max_examples=1500, deadline=None)
@given(_ADDRESS | _PLAINISH | st.text(max_size=80))
def test_plain_address_fast_path_agrees_with_email_validator(value: str) -> None:
    fast = _plain_address(value)
    if fast is None:
        return  # not in the fast subset: the full path decides
    assert _oracle(value) == (fast.address, fast.unicode, fast.smtputf8), value


@settings(max_examples=800, deadline=None)
@given(_ADDRESS | _PLAINISH)
def test_second_pass_normalisation_agrees_with_the_first(value: str) -> None:
    try:
        first = parse_address(value)
    except AddressError:
        return
    assert parse_address(value, validated=True) == first


def test_fast_path_declines_what_it_cannot_vouch_for() -> None:
    for value in ["a@xn--exmple-cua.test", "a@b.local", "a@ab--cd.test", "a.@x.test",
                  "a@x.c0m", "a" * 65 + "@x.test", "a@x.localhost"]:
        assert _plain_address(value) is None, value
