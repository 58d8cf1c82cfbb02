"""One address per value: validation with email-validator, never ``email.utils``.

``email.utils.parseaddr`` and ``policy.default`` silently truncate
``a@x; b@y`` to ``a@x`` (CVE-2023-27043). A cell that holds anything but one
bare address is an error here, named with its reason, never a cleaned value.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from email_validator import SPECIAL_USE_DOMAIN_NAMES, EmailNotValidError, validate_email

from campaign_tool.headers import unsafe_character


class AddressError(ValueError):
    """A value is not exactly one valid e-mail address; ``str()`` says why."""


@dataclass(frozen=True, slots=True)
class Mailbox:
    """A validated address in the forms campaign_tool needs.

    ``address`` is what goes on the wire (RCPT TO and the ``To`` header): the
    ASCII form with an A-label domain when the local part is ASCII, else the
    UTF-8 form, which then needs SMTPUTF8 (``smtputf8`` is true). ``key`` is the
    lower-cased canonical form used for duplicates, suppression and the audit
    log's pseudonyms. ``unicode`` is the normalized U-label form.
    """

    address: str
    key: str
    unicode: str
    smtputf8: bool

    @property
    def forms(self) -> frozenset[str]:
        """Every lower-cased spelling of this address a message could contain."""
        return frozenset({self.key, self.unicode.lower(), self.address.lower()})

    @property
    def domain(self) -> str:
        """The ASCII (A-label) domain, lower-cased."""
        return self.key.rpartition("@")[2]


# A deliberately narrow subset of addresses that email-validator is known to
# accept unchanged but for the domain's case: plain ASCII local parts, LDH
# labels without "--" (so no Punycode), an alphabetic TLD, within the length
# limits, outside the special-use names. Everything else takes the full path.
# tests/test_addresses.py checks this subset against email-validator itself.
_PLAIN = re.compile(
    r"([A-Za-z0-9_+-]+(?:\.[A-Za-z0-9_+-]+)*)"
    r"@((?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63})")
_SPECIAL_USE = tuple(name for name in SPECIAL_USE_DOMAIN_NAMES if name != "test")


def _plain_address(value: str) -> Mailbox | None:
    """The Mailbox of an address in the plain subset, without the costly checks."""
    match = _PLAIN.fullmatch(value)
    if match is None:
        return None
    local, domain = match.groups()
    if len(local) > 64 or len(value) > 254 or "--" in domain:
        return None
    domain = domain.lower()
    for special in _SPECIAL_USE:
        if domain == special or domain.endswith("." + special):
            return None
    address = f"{local}@{domain}"
    return Mailbox(address=address, key=address.lower(), unicode=address, smtputf8=False)


def parse_address(value: object, *, validated: bool = False) -> Mailbox:
    """Validate ``value`` as exactly one bare e-mail address.

    Syntax only (no DNS). Internationalised addresses are accepted. Addresses
    under the special-use ``.test`` domain are accepted so that trials and
    tests can use them. Raises :class:`AddressError` with a reason fit to show.

    ``validated`` says this exact value passed before (the second pass over an
    unchanged row): an ASCII address without Punycode then only needs the case
    of its domain normalised.
    """
    if validated and isinstance(value, str) and value.isascii() and "xn--" not in value:
        local, _, domain = value.rpartition("@")
        address = f"{local}@{domain.lower()}"
        return Mailbox(address=address, key=address.lower(), unicode=address, smtputf8=False)
    if isinstance(value, str):
        plain = _plain_address(value)
        if plain is not None:
            return plain
    if not isinstance(value, str):
        raise AddressError(f"must be text, not {_type_name(value)}")
    if not value:
        raise AddressError("is empty")
    unsafe = unsafe_character(value)
    if unsafe:
        raise AddressError(f"contains {unsafe}")
    if value != value.strip():
        raise AddressError("has spaces before or after the address")
    if ":" in value:
        raise AddressError("uses group syntax (':'), which names several recipients")
    if "," in value or ";" in value:
        raise AddressError("holds several addresses (a ',' or ';' separates them); "
                           "give each recipient its own row")
    if "<" in value or ">" in value or '"' in value:
        raise AddressError("holds a display name or angle brackets, not a bare address; "
                           "put the name in its own column")
    if " " in value:
        raise AddressError("contains spaces")
    if value.count("@") != 1:
        raise AddressError("has no '@'" if "@" not in value else "has more than one '@'")
    try:
        valid = validate_email(
            value,
            check_deliverability=False,
            test_environment=True,
            allow_display_name=False,
            allow_quoted_local=False,
            allow_domain_literal=False,
            allow_empty_local=False,
        )
    except EmailNotValidError as error:
        raise AddressError(str(error).rstrip(".")) from None
    ascii_form = valid.ascii_email
    wire = ascii_form if ascii_form else valid.normalized
    return Mailbox(
        address=wire,
        key=wire.lower(),
        unicode=valid.normalized,
        smtputf8=ascii_form is None,
    )


def _type_name(value: object) -> str:
    if value is None:
        return "null"
    names = {bool: "true/false", int: "a number", float: "a number", list: "a list",
             dict: "an object"}
    return names.get(type(value), type(value).__name__)
