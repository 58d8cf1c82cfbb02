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
_PERCENT_ESCAPE = re.compile(r"%[0-9A-Fa-f]{2}")


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

    Collected into 256 buckets by the hash's top byte and sorted bucket by
    bucket: the buckets concatenated in order are sorted as a whole, and the
    sort's transient memory (about 50 bytes an entry as Python ints) is that of
    one bucket, not of the whole list. Lookups are binary searches. When
    several owners share a hash, :meth:`owner` returns the smallest.
    """

    __slots__ = ("_hashes", "_owners")
    _OWNER_BITS = 48

    def __init__(self, hashes: array[int], owners: array[int]) -> None:
        self._hashes = hashes
        self._owners = owners

    @classmethod
    def from_buckets(cls, buckets: HashBuckets) -> SortedHashes:
        """Sort what the buckets hold (emptying them as it goes)."""
        bits, mask = cls._OWNER_BITS, (1 << cls._OWNER_BITS) - 1
        hashes: array[int] = array("Q")
        owners: array[int] = array(buckets.owner_type)
        for bucket_hashes, bucket_owners in buckets.pairs:
            packed = sorted([h << bits | o for h, o in zip(bucket_hashes, bucket_owners,
                                                            strict=True)])
            hashes.extend(p >> bits for p in packed)
            owners.extend(p & mask for p in packed)
            del bucket_hashes[:], bucket_owners[:]
        return cls(hashes, owners)

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


class HashBuckets:
    """(hash, owner) pairs collected in 256 buckets by the hash's top byte."""

    __slots__ = ("owner_type", "pairs")

    def __init__(self, owner_type: str) -> None:
        self.owner_type = owner_type
        self.pairs: list[tuple[array[int], array[int]]] = [
            (array("Q"), array(owner_type)) for _ in range(256)]

    def add(self, hashed: int, owner: int) -> None:
        """Record one pair."""
        hashes, owners = self.pairs[hashed >> 56]
        hashes.append(hashed)
        owners.append(owner)


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
        # Rows fit 32 bits ("I"); a value's owner is row << 8 | column ("Q").
        self._keys = HashBuckets("I")
        self._alternates = HashBuckets("I")
        self._values = HashBuckets("Q")
        self._first_tokens: set[int] = set()  # few distinct: "acc" starts every "ACC-…"
        self._lengths: set[int] = set()
        self.short_values: dict[str, ShortValues] = {}

    def add(self, recipient: Recipient) -> None:
        """Index one valid row."""
        mailbox = recipient.mailbox
        self._keys.add(_h(mailbox.key), recipient.row)
        if mailbox.unicode != mailbox.address:
            for form in mailbox.forms - {mailbox.key}:
                self._alternates.add(_h(form), recipient.row)
        for column, value in recipient.private_values(self.private_columns):
            value_tokens = tokens(value)
            if sum(len(t) for t in value_tokens) < self.min_private_length:
                short = self.short_values.setdefault(column, ShortValues())
                short.count += 1
                if len(short.rows) < 10:
                    short.rows.append(recipient.row)
                continue
            self._values.add(_h(b" ".join(value_tokens)),
                             recipient.row << 8 | self.private_columns.index(column))
            if len(value_tokens) > 1:
                self._first_tokens.add(_h(value_tokens[0]))
                self._lengths.add(len(value_tokens))

    def build(self) -> LeakIndex:
        """Sort what was collected into the immutable index."""
        firsts = sorted(self._first_tokens)
        index = LeakIndex(
            keys=SortedHashes.from_buckets(self._keys),
            alternates=SortedHashes.from_buckets(self._alternates),
            values=SortedHashes.from_buckets(self._values),
            first_tokens=SortedHashes(array("Q", firsts), array("I", bytes(4 * len(firsts)))),
            lengths=tuple(sorted(self._lengths)),
            private_columns=self.private_columns,
        )
        self._first_tokens.clear()
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

    def first_row(self, address_key: str) -> int | None:
        """The first row with this address key: a later row with it is a duplicate."""
        return self.keys.owner(_h(address_key))



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
        # Lines that can start no private-value match, and how many tokens of
        # the following lines a match starting on a line could reach.
        self._safe_lines: set[str] = set()
        self._lookahead = max(index.lengths, default=1) - 1

    def scan(self, recipient: Recipient, parts: Sequence[tuple[str, str]]) -> list[Leak]:
        """Every leak in ``parts`` ((name, text) pairs) of ``recipient``'s message.

        Parts named ``"HTML body"`` have their entities decoded first, so
        ``&#64;`` cannot hide an ``@``. The parts are checked as one text (one
        tokenizing pass); only when something is found is each part checked
        alone, to say where.
        """
        prepared = [(name, _readable(name, text)) for name, text in parts if text]
        own = _Own(recipient, self.index.private_columns)
        combined = "\n".join(text for _, text in prepared)
        if not self._owners(combined, recipient, own):
            return []
        leaks: list[Leak] = []
        for name, text in prepared:
            for owner, column in self._owners(text, recipient, own):
                leak = Leak(name, owner, column)
                if leak not in leaks:
                    leaks.append(leak)
        return leaks

    def _owners(self, text: str, recipient: Recipient,
                own: _Own) -> list[tuple[int, str | None]]:
        found: list[tuple[int, str | None]] = []
        if "@" in text:
            found.extend((owner, None) for owner in
                         self._foreign_addresses(text, own.forms, recipient.row))
        if self._check_values:
            columns = self.index.private_columns
            found.extend((owner >> 8, columns[owner & 0xFF]) for owner in
                         self._foreign_values(text, own))
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

    def _foreign_values(self, text: str, own: _Own) -> Iterator[int]:
        """Owners of private values in ``text``, line by line.

        A line whose tokens are neither a private value nor the first token of
        one can start no match, so once seen it is skipped (the template's
        fixed lines, mostly). Each line that is checked gets the next lines'
        first tokens as look-ahead, so a value broken across lines is found.
        """
        lines = text.split("\n")
        safe_lines = self._safe_lines
        lookahead = self._lookahead
        for number, line in enumerate(lines):
            if line in safe_lines or not line:
                continue
            run = tokens(line)
            own_tokens = len(run)
            if lookahead:
                following = number + 1
                while len(run) - own_tokens < lookahead and following < len(lines):
                    run.extend(tokens(lines[following]))
                    following += 1
            hit = False
            for owner in self._line_values(run, own_tokens, own):
                hit = True
                yield owner
            if not hit and self._line_is_inert(run, own_tokens) \
                    and len(safe_lines) < _SAFE_CACHE_LIMIT:
                safe_lines.add(line)

    def _line_is_inert(self, run: list[bytes], own_tokens: int) -> bool:
        """True when no token of the line is in the value or first-token index."""
        values, firsts = self.index.values, self.index.first_tokens
        for token in run[:own_tokens]:
            if token in self._safe:
                continue
            hashed = _h(token)
            if hashed in values or hashed in firsts:
                return False
        return True

    def _line_values(self, run: list[bytes], own_tokens: int, own: _Own) -> Iterator[int]:
        values, firsts = self.index.values, self.index.first_tokens
        for token in set(run[:own_tokens]) - self._safe:
            hashed = _h(token)
            in_values = hashed in values
            is_first = hashed in firsts
            if not in_values and not is_first:
                if len(self._safe) < _SAFE_CACHE_LIMIT:
                    self._safe.add(token)
                continue
            if in_values and not own.owns(hashed):
                owner = values.owner(hashed)
                if owner is not None:
                    yield owner
            if is_first:
                yield from self._foreign_runs(run, token, own, own_tokens)

    def _foreign_runs(self, run: list[bytes], first: bytes, own: _Own,
                      starts_before: int) -> Iterator[int]:
        values = self.index.values
        start = -1
        while True:
            try:
                start = run.index(first, start + 1)  # a C-level search, not a Python loop
            except ValueError:
                return
            if start >= starts_before:
                return  # a look-ahead token: its own line is checked in its turn
            for length in self.index.lengths:
                if start + length > len(run):
                    break
                hashed = _h(b" ".join(run[start:start + length]))
                if hashed in values and not own.owns(hashed):
                    owner = values.owner(hashed)
                    if owner is not None:
                        yield owner


class _Own:
    """What belongs to the recipient being checked, computed only as far as needed.

    Most hits are the recipient's own full values (cheap to test); only a hit
    that is not one of them needs every token run of their own data, so that a
    value another row holds as a whole (``Smith``) is not a leak where it is
    part of this recipient's own data (``Anna Smith``).
    """

    __slots__ = ("_columns", "_full", "_recipient", "_runs", "forms")

    def __init__(self, recipient: Recipient, columns: tuple[str, ...]) -> None:
        self._recipient, self._columns = recipient, columns
        self.forms = frozenset(_h(form) for form in recipient.mailbox.forms)
        self._full: set[int] | None = None
        self._runs: set[int] | None = None

    def _texts(self) -> list[str]:
        recipient = self._recipient
        texts = [value for _, value in recipient.private_values(self._columns)]
        texts += [recipient.mailbox.unicode, recipient.mailbox.address]
        if recipient.name:
            texts.append(recipient.name)
        return texts

    def owns(self, hashed: int) -> bool:
        """True when ``hashed`` is a token run of this recipient's own data."""
        if self._full is None:
            self._full = {_h(b" ".join(tokens(text))) for text in self._texts()}
        if hashed in self._full:
            return True
        if self._runs is None:
            runs: set[int] = set()
            for text in self._texts():
                run = tokens(text)
                for start in range(len(run)):
                    for end in range(start + 1, min(len(run), start + 12) + 1):
                        runs.add(_h(b" ".join(run[start:end])))
            self._runs = runs
        return hashed in self._runs


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
    if "%" in text and _PERCENT_ESCAPE.search(text):  # "100%" alone needs no decoding
        text = unquote(text)
    return text
