"""Recipient lists (CSV, JSON, JSON Lines), streamed row by row and validated.

Nothing here holds the whole list: readers yield one row at a time and the
caller decides what little to keep. A row that cannot be used is reported with
its row number, its line and the reason; a file that cannot be read at all is
an :class:`~campaign_tool.errors.InputError`.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Literal

from campaign_tool.addresses import AddressError, Mailbox, parse_address
from campaign_tool.errors import InputError
from campaign_tool.findings import Finding
from campaign_tool.headers import unsafe_character

Format = Literal["csv", "json", "jsonl"]
MAX_NAME_LENGTH = 256
_CHUNK = 1 << 16
_DUPLICATE_KEYS = object()  # marker key: the object had repeated keys


@dataclass(slots=True)
class RawRow:
    """One record as read: its data row number, its first line, and its fields.

    ``fields`` is None and ``problem`` says why when the record itself is
    unusable (wrong field count, not an object, invalid JSON on its line).
    """

    number: int
    line: int
    fields: dict[str, Any] | None
    problem: str | None = None


@dataclass(frozen=True, slots=True)
class ColumnSpec:
    """Which columns carry the address, the display name and private values."""

    email: str
    name: str | None = None
    private: tuple[str, ...] = ()

    @property
    def required(self) -> tuple[str, ...]:
        """Columns every row must have (CSV headers are checked for all of them)."""
        return tuple(c for c in (self.email, self.name, *self.private) if c is not None)


@dataclass(frozen=True, slots=True)
class Recipient:
    """A valid row: one mailbox, an optional display name, and all its fields."""

    row: int
    line: int
    mailbox: Mailbox
    name: str | None
    fields: dict[str, Any]

    def private_values(self, columns: tuple[str, ...]) -> Iterator[tuple[str, str]]:
        """(column, value as text) for each non-empty private value of this row."""
        for column in columns:
            value = self.fields.get(column)
            if value is None or value == "":
                continue
            yield column, value if isinstance(value, str) else json.dumps(value)


def read_rows(path: Path, fmt: Format) -> Iterator[RawRow]:
    """Stream the records of a recipient list.

    Raises :class:`InputError` (naming the file and line) when the file cannot
    be read on: missing, not UTF-8, an unterminated quote, no header.
    """
    try:
        handle = path.open(encoding="utf-8-sig", newline="" if fmt == "csv" else None)
    except FileNotFoundError:
        raise _input_error(path, None, "no such file") from None
    except OSError as error:
        raise _input_error(path, None, f"cannot open: {error.strerror}") from None
    with handle:
        readers = {"csv": _read_csv, "json": _read_json_array, "jsonl": _read_json_lines}
        try:
            yield from readers[fmt](path, handle)
        except UnicodeDecodeError as error:
            raise _input_error(path, None, f"not valid UTF-8 (byte {error.start} of a "
                               "block could not be decoded); save the file as UTF-8") from None


def csv_header(path: Path) -> list[str] | None:
    """The header row of a CSV file, or None if it has none (used for messages)."""
    try:
        with path.open(encoding="utf-8-sig", newline="") as handle:
            return next(csv.reader(handle, strict=True), None)
    except (OSError, UnicodeDecodeError, csv.Error):
        return None


def _read_csv(path: Path, handle: IO[str]) -> Iterator[RawRow]:
    reader = csv.reader(handle, strict=True)
    try:
        header = next(reader, None)
    except csv.Error as error:
        raise _input_error(path, reader.line_num, f"the header row is malformed: {error}") from None
    if header is None:
        raise _input_error(path, None, "the file is empty; it needs a header row")
    problems = _header_problems(header)
    if problems:
        raise _input_error(path, 1, "; ".join(problems))
    width = len(header)
    next_line = reader.line_num + 1
    number = 0
    while True:
        start = next_line
        try:
            record = next(reader, None)
        except csv.Error as error:
            raise _input_error(
                path, start, f"malformed CSV ({error}); an unterminated quote "
                "would swallow the rest of the file, so nothing after it is read") from None
        if record is None:
            return
        next_line = reader.line_num + 1
        if not record:
            continue  # a blank line is not a row
        number += 1
        if len(record) != width:
            yield RawRow(number, start, None,
                         f"has {len(record)} fields; the header has {width}")
        else:
            yield RawRow(number, start, dict(zip(header, record, strict=True)))


def _header_problems(header: list[str]) -> list[str]:
    problems = []
    seen: set[str] = set()
    for index, name in enumerate(header, start=1):
        if not name.strip():
            problems.append(f"header column {index} has no name")
        elif name in seen:
            problems.append(f"header names column '{name}' twice")
        seen.add(name)
    return problems


def _object_pairs(pairs: list[tuple[str, Any]]) -> dict[Any, Any]:
    result: dict[Any, Any] = dict(pairs)
    if len(result) != len(pairs):
        seen: set[str] = set()
        repeated: set[str] = set()
        for key, _ in pairs:
            (repeated if key in seen else seen).add(key)
        result[_DUPLICATE_KEYS] = sorted(repeated)
    return result


_DECODER = json.JSONDecoder(object_pairs_hook=_object_pairs)


def _as_row(number: int, line: int, value: Any) -> RawRow:
    if not isinstance(value, dict):
        return RawRow(number, line, None, "is not a JSON object")
    repeated = value.pop(_DUPLICATE_KEYS, None)
    if repeated:
        names = ", ".join(f"'{k}'" for k in repeated)
        return RawRow(number, line, None, f"has the key {names} more than once")
    return RawRow(number, line, value)


def _read_json_lines(path: Path, handle: IO[str]) -> Iterator[RawRow]:
    number = 0
    for line_number, line in enumerate(handle, start=1):
        if not line.strip():
            continue
        number += 1
        try:
            value = _DECODER.decode(line)
        except json.JSONDecodeError as error:
            yield RawRow(number, line_number, None, f"is not valid JSON: {error.msg}")
            continue
        yield _as_row(number, line_number, value)


class _JsonStream:
    """An incremental reader of one JSON array, one element at a time."""

    def __init__(self, path: Path, handle: IO[str]) -> None:
        self.path, self.handle = path, handle
        self.buffer, self.pos, self.line, self.eof = "", 0, 1, False

    def _more(self) -> bool:
        if self.eof:
            return False
        chunk = self.handle.read(_CHUNK)
        if not chunk:
            self.eof = True
            return False
        # Drop what was consumed, counting its lines, so memory stays bounded.
        self.line += self.buffer.count("\n", 0, self.pos)
        self.buffer, self.pos = self.buffer[self.pos:] + chunk, 0
        return True

    def _line_at(self, pos: int) -> int:
        return self.line + self.buffer.count("\n", 0, pos)

    def peek(self) -> str:
        """The next non-blank character ('' at the end), without consuming it."""
        while True:
            while self.pos < len(self.buffer) and self.buffer[self.pos] in " \t\r\n":
                self.pos += 1
            if self.pos < len(self.buffer):
                return self.buffer[self.pos]
            if not self._more():
                return ""

    def expect(self, chars: str, what: str) -> str:
        """Consume one of ``chars`` or fail naming the line."""
        char = self.peek()
        if not char or char not in chars:
            found = f"'{char}'" if char else "the end of the file"
            raise self.error(f"expected {what}, found {found}")
        self.pos += 1
        return char

    def value(self) -> tuple[Any, int]:
        """Decode the next value and return it with the line it starts on."""
        self.peek()
        while True:
            start_line = self._line_at(self.pos)
            try:
                value, end = _DECODER.raw_decode(self.buffer, self.pos)
            except json.JSONDecodeError as error:
                if self._more():
                    continue
                raise _input_error(self.path, self._line_at(error.pos),
                                   f"not valid JSON: {error.msg}") from None
            if end == len(self.buffer) and self._more():
                continue  # a number cut by the block boundary: decode it whole
            self.pos = end
            return value, start_line

    def error(self, reason: str) -> InputError:
        """An input error at the current position."""
        return _input_error(self.path, self._line_at(self.pos), reason)


def _read_json_array(path: Path, handle: IO[str]) -> Iterator[RawRow]:
    stream = _JsonStream(path, handle)
    if stream.peek() == "":
        raise _input_error(path, None, "the file is empty")
    stream.expect("[", "a JSON array of objects ('[')")
    number = 0
    if stream.peek() == "]":
        stream.pos += 1
    else:
        while True:
            value, line = stream.value()
            number += 1
            yield _as_row(number, line, value)
            if stream.expect(",]", "',' or ']' after an array element") == "]":
                break
    if stream.peek() != "":
        raise stream.error("unexpected data after the end of the array")


def check_row(raw: RawRow, spec: ColumnSpec, *, validated: bool = False) -> Recipient | str:
    """Validate one record: the Recipient, or the reason it cannot be used.

    ``validated``: this exact record passed before (see ``parse_address``).
    """
    if raw.fields is None:
        return raw.problem or "cannot be read"
    fields = raw.fields
    if spec.email not in fields:
        return f"has no '{spec.email}' column"
    try:
        mailbox = parse_address(fields[spec.email], validated=validated)
    except AddressError as error:
        return f"column '{spec.email}' {error}"
    name = None
    if spec.name is not None:
        value = fields.get(spec.name)
        if value is not None and value != "":
            if not isinstance(value, str):
                return f"column '{spec.name}' must be text"
            problem = _name_problem(value)
            if problem:
                return f"column '{spec.name}' {problem}"
            name = value
    return Recipient(raw.number, raw.line, mailbox, name, fields)


def _name_problem(name: str) -> str | None:
    unsafe = unsafe_character(name)
    if unsafe:
        return f"contains {unsafe}, which must never reach a header"
    if "@" in name or "<" in name or ">" in name:
        return ("looks like it holds an address; a display name may not contain "
                "'@', '<' or '>'")
    if len(name) > MAX_NAME_LENGTH:
        return f"is {len(name)} characters long; the limit is {MAX_NAME_LENGTH}"
    return None


def missing_csv_columns(path: Path, spec: ColumnSpec) -> list[str]:
    """Columns the config needs that a CSV file's header lacks."""
    header = csv_header(path)
    if header is None:
        return []
    return [column for column in spec.required if column not in header]


def read_suppression(path: Path) -> tuple[frozenset[str], list[Finding]]:
    """The suppression list's address keys, and a finding per unusable line.

    An unusable line is an error, not a skipped line: someone who asked not to
    be mailed must not be mailed because their line had a typo.
    """
    keys: set[str] = set()
    findings: list[Finding] = []
    try:
        with path.open(encoding="utf-8-sig") as handle:
            for number, line in enumerate(handle, start=1):
                entry = line.strip()
                if not entry or entry.startswith("#"):
                    continue
                try:
                    keys.add(parse_address(entry).key)
                except AddressError as error:
                    findings.append(Finding("suppression-invalid",
                                            f"not a single valid address: {error}",
                                            file=path, line=number))
    except FileNotFoundError:
        raise _input_error(path, None, "no such file (the suppression list)") from None
    except UnicodeDecodeError:
        raise _input_error(path, None, "not valid UTF-8") from None
    return frozenset(keys), findings


def _input_error(path: Path, line: int | None, reason: str) -> InputError:
    finding = Finding("recipients-unreadable", reason, file=path, line=line)
    return InputError(finding.describe(), findings=[finding])
