"""The leak index and the per-message check that no message carries foreign data.

Invariant 2 of PRODUCT.md: no rendered message may contain another recipient's
address, nor another recipient's value of a ``private`` column. The index is
built once per campaign and holds only 64-bit hashes in sorted arrays (12 bytes
an entry), so a million recipients cost a few dozen megabytes and each lookup
is a binary search, never a scan of the list.

Matching rules, kept symmetrical for values and messages:

* Addresses are found around every ``@`` of the message text, lower-cased,
  after HTML entities are decoded (HTML part) and ``%40`` is read as ``@``.
* Private values are compared as token sequences: lower-cased text split on
  ASCII punctuation and white space (and on Unicode punctuation where the text
  is not ASCII). ``ACC-1234`` matches ``acc 1234`` and ``Acc/1234``: erring
  on the side of a false alarm.
* A recipient's own address, own private values and own display name are never
  foreign to that recipient, even where another row shares a value.

Hashes come from Python's per-process keyed SipHash (``hash()``); the index
lives only as long as the process, so the key never needs to be stored.
"""

from __future__ import annotations

import html
import re
from array import array
from bisect import bisect_left
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from urllib.parse import unquote

from campaign_tool.recipients import Recipient

_MASK64 = (1 << 64) - 1
# ASCII punctuation and white space become token separators; letters, digits
# and every byte of a multi-byte UTF-8 sequence stay.
_SEPARATE = bytes(
    b if (b >= 0x80 or chr(b).isalnum()) else 0x20 for b in range(256))
_UNICODE_TOKEN = re.compile(r"[^\W_]+")
_LOCAL_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789!#$%&'*+/=?^_`{|}~.-")
_LOCAL_PUNCT = frozenset("!#$%&'*+/=?^_`{|}~.-")
_DOMAIN = re.compile(r"[\w.-]+")
_SAFE_CACHE_LIMIT = 50_000


def _h(data: str | bytes) -> int:
    return hash(data) & _MASK64


def tokens(text: str) -> list[bytes]:
    """The comparison tokens of ``text`` (lower-cased, punctuation removed)."""
    parts = text.lower().encode("utf-8", "surrogatepass").translate(_SEPARATE).split()
    if text.isascii():
        return parts
    refined: list[bytes] = []
    for part in parts:
        if part.isascii():
            refined.append(part)
        else:
            refined.extend(_refine(part))
    return refined


def _refine(token: bytes) -> list[bytes]:
    """Split a non-ASCII token on Unicode punctuation (curly quotes, dashes ...)."""
    words = _UNICODE_TOKEN.findall(token.decode("utf-8", "surrogatepass"))
    return [w.encode("utf-8", "surrogatepass") for w in words]


class SortedHashes:
    """An immutable set of 64-bit hashes, each with an owner, in two arrays.

    Built by sorting ``(hash, owner)`` pairs once, packed into single integers
    so the sort's transient memory stays near 50 bytes an entry; lookups are
    binary searches. When several owners share a hash, :meth:`owner` returns
    the smallest.
    """

    __slots__ = ("_hashes", "_owners")
    _OWNER_BITS = 48

    def __init__(self, hashes: array[int], owners: array[int] | None = None) -> None:
        if owners is None:
            self._hashes = array("Q", sorted(hashes))
            self._owners = array("Q", bytes(8 * len(hashes)))
            return
        bits, mask = self._OWNER_BITS, (1 << self._OWNER_BITS) - 1
        packed = sorted([h << bits | o for h, o in zip(hashes, owners, strict=True)])
        self._hashes = array("Q", (p >> bits for p in packed))
        self._owners = array("Q", (p & mask for p in packed))

    def __len__(self) -> int:
        return len(self._hashes)

    def __contains__(self, value: int) -> bool:
        index = bisect_left(self._hashes, value)
        return index < len(self._hashes) and self._hashes[index] == value

    def owner(self, value: int) -> int | None:
        """The smallest owner recorded for ``value``, or None."""
        index = bisect_left(self._hashes, value)
        if index < len(self._hashes) and self._hashes[index] == value:
            return self._owners[index]
        return None

    def repeated(self) -> Iterator[tuple[int, int]]:
        """(hash, first owner) for every hash recorded more than once."""
        hashes, owners = self._hashes, self._owners
        previous = None
        for index in range(1, len(hashes)):
            value = hashes[index]
            if value == hashes[index - 1] and value != previous:
                previous = value
                yield value, owners[index - 1]

    def nbytes(self) -> int:
        """Memory held by the two arrays."""
        return (len(self._hashes) + len(self._owners)) * 8


@dataclass(slots=True)
class ShortValues:
    """Private values too short to check, counted per column for one warning."""

    count: int = 0
    rows: list[int] = field(default_factory=list)


class LeakIndexBuilder:
    """Collects every row's address forms and private values during the scan."""

    def __init__(self, private_columns: Sequence[str], min_private_length: int) -> None:
        self.private_columns = tuple(private_columns)
        self.min_private_length = min_private_length
        self._key_hashes: array[int] = array("Q")
        self._key_rows: array[int] = array("Q")
        self._alt_hashes: array[int] = array("Q")
        self._alt_rows: array[int] = array("Q")
        self._value_hashes: array[int] = array("Q")
        self._value_owners: array[int] = array("Q")
        self._first_tokens: array[int] = array("Q")
        self._lengths: set[int] = set()
        self.short_values: dict[str, ShortValues] = {}

    def add(self, recipient: Recipient) -> None:
        """Index one valid row."""
        mailbox = recipient.mailbox
        self._key_hashes.append(_h(mailbox.key))
        self._key_rows.append(recipient.row)
        for form in mailbox.forms - {mailbox.key}:
            self._alt_hashes.append(_h(form))
            self._alt_rows.append(recipient.row)
        for column, value in recipient.private_values(self.private_columns):
            value_tokens = tokens(value)
            if sum(len(t) for t in value_tokens) < self.min_private_length:
                short = self.short_values.setdefault(column, ShortValues())
                short.count += 1
                if len(short.rows) < 10:
                    short.rows.append(recipient.row)
                continue
            self._value_hashes.append(_h(b" ".join(value_tokens)))
            self._value_owners.append(
                recipient.row << 8 | self.private_columns.index(column))
            if len(value_tokens) > 1:
                self._first_tokens.append(_h(value_tokens[0]))
                self._lengths.add(len(value_tokens))

    def build(self) -> LeakIndex:
        """Sort what was collected into the immutable index."""
        index = LeakIndex(
            keys=SortedHashes(self._key_hashes, self._key_rows),
            alternates=SortedHashes(self._alt_hashes, self._alt_rows),
            values=SortedHashes(self._value_hashes, self._value_owners),
            first_tokens=SortedHashes(self._first_tokens),
            lengths=tuple(sorted(self._lengths)),
            private_columns=self.private_columns,
        )
        # Release the collection arrays: the index holds sorted copies.
        for collected in (self._key_hashes, self._key_rows, self._alt_hashes, self._alt_rows,
                          self._value_hashes, self._value_owners, self._first_tokens):
            del collected[:]
        return index


@dataclass(frozen=True, slots=True)
class LeakIndex:
    """Hashes of every recipient's addresses and private values, built once."""

    keys: SortedHashes
    alternates: SortedHashes
    values: SortedHashes
    first_tokens: SortedHashes
    lengths: tuple[int, ...]
    private_columns: tuple[str, ...]

    def address_owner(self, address: str) -> int | None:
        """The first row whose address is ``address`` (any lower-cased form)."""
        hashed = _h(address)
        owner = self.keys.owner(hashed)
        return owner if owner is not None else self.alternates.owner(hashed)

    def duplicates(self) -> dict[int, int]:
        """Address-key hash -> first row, for every address on several rows."""
        return dict(self.keys.repeated())

    def nbytes(self) -> int:
        """Memory held by the index's arrays."""
        return sum(s.nbytes() for s in (self.keys, self.alternates, self.values,
                                        self.first_tokens))


@dataclass(frozen=True, slots=True)
class Leak:
    """Foreign data found in one part of one message."""

    part: str
    owner_row: int
    column: str | None  # None: an address; else the private column

    def describe(self) -> str:
        """What leaked, without quoting it (findings are printed in CI logs)."""
        what = (f"the address of row {self.owner_row}" if self.column is None
                else f"the value of private column '{self.column}' of row {self.owner_row}")
        return f"{self.part} contains {what}, another recipient of this campaign"


class LeakScanner:
    """Checks one rendered message at a time against the campaign's index.

    ``campaign_addresses`` (the sender, Reply-To, unsubscribe mailbox) appear in
    every message by design and are never counted as leaks.
    """

    def __init__(self, index: LeakIndex, campaign_addresses: Iterable[str] = ()) -> None:
        self.index = index
        self._campaign_hashes = frozenset(_h(a.lower()) for a in campaign_addresses)
        self._check_values = len(index.values) > 0
        # Tokens known to be in no index: the template's fixed words, mostly.
        self._safe: set[bytes] = set()

    def scan(self, recipient: Recipient, parts: Sequence[tuple[str, str]]) -> list[Leak]:
        """Every leak in ``parts`` ((name, text) pairs) of ``recipient``'s message.

        Parts named ``"HTML body"`` have their entities decoded first, so
        ``&#64;`` cannot hide an ``@``. The parts are checked as one text (one
        tokenizing pass); only when something is found is each part checked
        alone, to say where.
        """
        prepared = [(name, _readable(name, text)) for name, text in parts if text]
        own_forms = frozenset(_h(form) for form in recipient.mailbox.forms)
        own_values = self._own_values(recipient) if self._check_values else set()
        combined = "\n".join(text for _, text in prepared)
        if not self._owners(combined, recipient, own_forms, own_values):
            return []
        leaks: list[Leak] = []
        for name, text in prepared:
            for owner, column in self._owners(text, recipient, own_forms, own_values):
                leak = Leak(name, owner, column)
                if leak not in leaks:
                    leaks.append(leak)
        return leaks

    def _owners(self, text: str, recipient: Recipient, own_forms: frozenset[int],
                own_values: set[int]) -> list[tuple[int, str | None]]:
        found: list[tuple[int, str | None]] = []
        if "@" in text:
            found.extend((owner, None) for owner in
                         self._foreign_addresses(text, own_forms, recipient.row))
        if self._check_values:
            columns = self.index.private_columns
            found.extend((owner >> 8, columns[owner & 0xFF]) for owner in
                         self._foreign_values(text, own_values))
        return found

    def _foreign_addresses(self, text: str, own: frozenset[int], row: int) -> Iterator[int]:
        lower = text.lower()
        at = lower.find("@")
        while at != -1:
            for candidate in _address_candidates(lower, at):
                hashed = _h(candidate)
                if hashed in own or hashed in self._campaign_hashes:
                    continue
                owner = self.index.address_owner(candidate)
                if owner is not None and owner != row:
                    yield owner
            at = lower.find("@", at + 1)

    def _own_values(self, recipient: Recipient) -> set[int]:
        """Hashes of every token run inside this recipient's own data."""
        own: set[int] = set()
        texts = [value for _, value in recipient.private_values(self.index.private_columns)]
        texts.append(recipient.mailbox.unicode)
        texts.append(recipient.mailbox.address)
        if recipient.name:
            texts.append(recipient.name)
        for text in texts:
            run = tokens(text)
            for start in range(len(run)):
                for end in range(start + 1, min(len(run), start + 12) + 1):
                    own.add(_h(b" ".join(run[start:end])))
        return own

    def _foreign_values(self, text: str, own: set[int]) -> Iterator[int]:
        run = tokens(text)
        unknown = set(run) - self._safe
        values, firsts = self.index.values, self.index.first_tokens
        for token in unknown:
            hashed = _h(token)
            in_values = hashed in values
            is_first = hashed in firsts
            if not in_values and not is_first:
                if len(self._safe) < _SAFE_CACHE_LIMIT:
                    self._safe.add(token)
                continue
            if in_values and hashed not in own:
                owner = values.owner(hashed)
                if owner is not None:
                    yield owner
            if is_first:
                yield from self._foreign_runs(run, token, own)

    def _foreign_runs(self, run: list[bytes], first: bytes, own: set[int]) -> Iterator[int]:
        values = self.index.values
        for start, token in enumerate(run):
            if token != first:
                continue
            for length in self.index.lengths:
                if start + length > len(run):
                    break
                hashed = _h(b" ".join(run[start:start + length]))
                if hashed in values and hashed not in own:
                    owner = values.owner(hashed)
                    if owner is not None:
                        yield owner


def _address_candidates(lower: str, at: int) -> Iterator[str]:
    """The address-like strings around the ``@`` at ``at`` of lower-cased text.

    A local part may be glued to text before it (``mailto:``, ``email=``,
    a quote), so every suffix that starts after a punctuation character is a
    candidate too; trailing dots and hyphens of the domain are dropped.
    """
    start = at
    while start > 0:
        char = lower[start - 1]
        if char in _LOCAL_CHARS or (char > "\x7f" and char.isalnum()):
            start -= 1
        else:
            break
    match = _DOMAIN.match(lower, at + 1)
    if start == at or match is None:
        return
    domain = match.group().rstrip(".-")
    if not domain:
        return
    local = lower[start:at]
    yield f"{local}@{domain}"
    for index, char in enumerate(local[:-1]):
        if char in _LOCAL_PUNCT:
            yield f"{local[index + 1:]}@{domain}"


def _readable(name: str, text: str) -> str:
    """The text as a reader sees it: HTML entities decoded, ``%xx`` decoded."""
    if name == "HTML body" and "&" in text:
        text = html.unescape(text)
    if "%" in text:
        text = unquote(text)
    return text
