"""The leak check: another recipient's address or private value never passes."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from campaign_tool.addresses import parse_address
from campaign_tool.privacy import LeakIndexBuilder, LeakScanner, tokens
from campaign_tool.recipients import Recipient

COLUMNS = ("account", "phone")


def recipient(row: int, email: str, name: str | None = None, **fields: str) -> Recipient:
    return Recipient(row=row, line=row + 1, mailbox=parse_address(email), name=name,
                     fields={"email": email, **fields})


PEOPLE = [
    recipient(1, "alice@example.test", "Alice Martin", account="ACC-1001", phone="555 0101"),
    recipient(2, "Bob.Smith@Example.test", "Bob Smith", account="ACC-1002", phone="555 0102"),
    recipient(3, "carol+news@example.test", "Carol", account="ACC-1003", phone="555 0103"),
    recipient(4, "josé@exämple.test", "José", account="ACC-1004", phone="555 0104"),
    recipient(5, "dan@example.test", "Dan", account="ACC-1001", phone="555 0105"),
]


def scanner(people: list[Recipient] = PEOPLE, **kwargs: object) -> LeakScanner:
    builder = LeakIndexBuilder(COLUMNS, 3)
    for person in people:
        builder.add(person)
    return LeakScanner(builder.build(), **kwargs)  # type: ignore[arg-type]


def leaks_for(person: Recipient, text: str, part: str = "text body") -> list[str]:
    return [leak.describe() for leak in scanner().scan(person, [(part, text)])]


def test_own_address_and_values_are_not_leaks() -> None:
    alice = PEOPLE[0]
    text = "Hi Alice Martin (alice@example.test), account ACC-1001, phone 555 0101."
    assert leaks_for(alice, text) == []


@pytest.mark.parametrize("text", [
    "Also sent to bob.smith@example.test",
    "Also sent to BOB.SMITH@EXAMPLE.TEST.",
    "<a href='mailto:bob.smith@example.test'>Bob</a>",
    "https://x.test/u?email=bob.smith%40example.test",
    "(bob.smith@example.test)",
    "'bob.smith@example.test'",
])
def test_another_recipients_address_is_found(text: str) -> None:
    assert leaks_for(PEOPLE[0], text) == [
        "text body contains the address of row 2, another recipient of this campaign"]


def test_address_hidden_behind_html_entities_is_found() -> None:
    found = leaks_for(PEOPLE[0], "<p>bob.smith&#64;example.test</p>", part="HTML body")
    assert found and "row 2" in found[0]


def test_internationalised_address_is_found_in_either_form() -> None:
    for text in ("write to josé@exämple.test", "write to JOSÉ@EXÄMPLE.TEST"):
        assert "row 4" in leaks_for(PEOPLE[0], text)[0]


def test_suffix_of_a_local_part_is_found_after_punctuation() -> None:
    assert "row 2" in leaks_for(PEOPLE[0], "ref=bob.smith@example.test")[0]


def test_a_longer_different_address_is_not_a_leak() -> None:
    assert leaks_for(PEOPLE[0], "xbob.smith@example.test.example.org") == []


@pytest.mark.parametrize("text", ["Your account: ACC-1002", "acc 1002", "ACC/1002",
                                  "phone: 555-0102", "«ACC-1002»", "“555 0102”"])
def test_another_recipients_private_value_is_found(text: str) -> None:
    found = leaks_for(PEOPLE[0], text)
    assert len(found) == 1 and "row 2" in found[0] and "private column" in found[0]


def test_value_shared_with_another_row_is_not_a_leak_for_its_owner() -> None:
    # Dan (row 5) has the same account value as Alice (row 1).
    assert leaks_for(PEOPLE[4], "account ACC-1001") == []


def test_part_where_the_leak_is_found_is_named() -> None:
    result = scanner().scan(PEOPLE[0], [("Subject", "Hi"), ("HTML body", "ACC-1003")])
    assert [(leak.part, leak.owner_row, leak.column) for leak in result] == [
        ("HTML body", 3, "account")]


def test_campaign_addresses_are_never_leaks() -> None:
    people = [*PEOPLE, recipient(6, "news@sender.test")]
    check = scanner(people, campaign_addresses=["news@sender.test"])
    assert check.scan(PEOPLE[0], [("From", "news@sender.test")]) == []


def test_short_private_values_are_counted_not_indexed() -> None:
    builder = LeakIndexBuilder(("pin",), 3)
    builder.add(recipient(1, "a@x.test", pin="12"))
    builder.add(recipient(2, "b@x.test", pin="1234"))
    index = builder.build()
    assert builder.short_values["pin"].count == 1
    assert len(index.values) == 1


def test_tokens_ignore_case_and_punctuation_symmetrically() -> None:
    assert tokens("ACC-1002") == tokens("acc 1002") == [b"acc", b"1002"]
    assert tokens("“Zoë’s”") == [b"zo\xc3\xab", b"s"]


LOCAL = st.from_regex(r"[a-z][a-z0-9._+-]{0,20}[a-z0-9]", fullmatch=True).filter(
    lambda s: ".." not in s)
FILLER = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=200)


@settings(max_examples=200, deadline=None)
@given(local=LOCAL, before=FILLER, after=FILLER,
       separator=st.sampled_from([" ", "\n", "<", ">", "(", ")", ",", ";", ":", '"', "\t"]))
def test_foreign_address_is_found_wherever_it_is_placed(local: str, before: str, after: str,
                                                        separator: str) -> None:
    victim = recipient(2, f"{local}@victim.test")
    check = scanner([PEOPLE[0], victim])
    text = f"{before}{separator}{local}@victim.test{separator}{after}"
    found = check.scan(PEOPLE[0], [("text body", text)])
    assert any(leak.owner_row == 2 for leak in found)


def _city_scanner() -> tuple[LeakScanner, Recipient, Recipient]:
    alice = recipient(1, "alice@example.test", account="New York City Branch 7")
    bob = recipient(2, "bob@example.test", account="Lisbon Harbour Office 9")
    builder = LeakIndexBuilder(("account",), 3)
    for person in (alice, bob):
        builder.add(person)
    return LeakScanner(builder.build()), alice, bob


def test_private_value_broken_across_lines_is_found() -> None:
    check, alice, _bob = _city_scanner()
    found = check.scan(alice, [("text body", "Our office:\nLisbon\nHarbour Office\n9\nBye")])
    assert [leak.owner_row for leak in found] == [2]


def test_value_broken_across_lines_is_found_after_its_tail_was_cached_as_safe() -> None:
    check, alice, _bob = _city_scanner()
    # First message: "Harbour Office" and "9" alone are inert lines, now cached.
    assert check.scan(alice, [("text body", "Harbour Office\n9\nHello")]) == []
    found = check.scan(alice, [("text body", "See Lisbon\nHarbour Office\n9")])
    assert [leak.owner_row for leak in found] == [2]


def test_cached_safe_lines_never_hide_a_value_that_starts_in_them() -> None:
    check, alice, _bob = _city_scanner()
    for _ in range(3):
        found = check.scan(alice, [("HTML body", "<p>Lisbon Harbour Office 9</p>")])
        assert [leak.owner_row for leak in found] == [2]


@settings(max_examples=150, deadline=None)
@given(before=FILLER, after=FILLER,
       breaks=st.lists(st.sampled_from([" ", "\n", "\n\n", " \n "]), min_size=3, max_size=3))
def test_multi_token_value_is_found_however_it_is_broken(before: str, after: str,
                                                         breaks: list[str]) -> None:
    check, alice, _bob = _city_scanner()
    check.scan(alice, [("text body", f"{before}\nHarbour Office 9\n{after}")])  # warm caches
    words = ["Lisbon", "Harbour", "Office", "9"]
    text = words[0] + "".join(b + w for b, w in zip(breaks, words[1:], strict=True))
    found = check.scan(alice, [("text body", f"{before}\n{text}\n{after}")])
    assert any(leak.owner_row == 2 for leak in found)
