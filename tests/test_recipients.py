"""Recipient lists: CSV, JSON, JSON Lines, streamed, with every row's problem named."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from campaign_tool.errors import InputError
from campaign_tool.recipients import (
    ColumnSpec,
    Recipient,
    check_row,
    read_rows,
    read_suppression,
)

SPEC = ColumnSpec("email", "name", ("account",))


def rows_of(path: Path, fmt: str) -> list:  # type: ignore[type-arg]
    return list(read_rows(path, fmt))  # type: ignore[arg-type]


def test_csv_with_a_bom_reads_the_first_column_name_cleanly(tmp_path: Path) -> None:
    path = tmp_path / "r.csv"
    path.write_bytes("\ufeffemail,name\r\nalice@example.test,Alice\r\n".encode())
    (row,) = rows_of(path, "csv")
    assert row.fields == {"email": "alice@example.test", "name": "Alice"}


def test_csv_rows_carry_their_row_and_line_numbers(tmp_path: Path) -> None:
    path = tmp_path / "r.csv"
    path.write_text('email,name\na@x.test,"multi\nline"\n\nb@x.test,B\n', encoding="utf-8")
    first, second = rows_of(path, "csv")
    assert (first.number, first.line) == (1, 2)
    assert (second.number, second.line) == (2, 5)


def test_empty_csv_file_is_an_input_error(tmp_path: Path) -> None:
    path = tmp_path / "r.csv"
    path.write_text("", encoding="utf-8")
    with pytest.raises(InputError, match="empty"):
        rows_of(path, "csv")


def test_csv_row_with_wrong_field_count_is_reported_not_guessed(tmp_path: Path) -> None:
    path = tmp_path / "r.csv"
    path.write_text("email,name\na@x.test,A,extra\n", encoding="utf-8")
    (row,) = rows_of(path, "csv")
    assert row.fields is None
    assert row.problem == "has 3 fields; the header has 2"


def test_unterminated_quote_stops_reading_with_the_line(tmp_path: Path) -> None:
    path = tmp_path / "r.csv"
    path.write_text('email,name\na@x.test,A\nb@x.test,"B\nc@x.test,C\n', encoding="utf-8")
    with pytest.raises(InputError, match="malformed CSV") as caught:
        rows_of(path, "csv")
    assert caught.value.findings[0].line == 3


def test_duplicated_header_column_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "r.csv"
    path.write_text("email,name,email\na,b,c\n", encoding="utf-8")
    with pytest.raises(InputError, match="column 'email' twice"):
        rows_of(path, "csv")


def test_non_utf8_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "r.csv"
    path.write_bytes("email,name\nzoe@x.test,Zo\xeb\n".encode("latin-1"))
    with pytest.raises(InputError, match="UTF-8"):
        rows_of(path, "csv")


def test_json_array_streams_across_block_boundaries(tmp_path: Path) -> None:
    records = [{"email": f"user{i}@example.test", "n": i, "pad": "x" * 500}
               for i in range(400)]
    path = tmp_path / "r.json"
    path.write_text(json.dumps(records, indent=2), encoding="utf-8")
    rows = rows_of(path, "json")
    assert [r.fields["n"] for r in rows] == list(range(400))
    assert rows[1].line == 7  # "[" then five lines per indented record


def test_json_object_with_a_repeated_key_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "r.json"
    path.write_text('[{"email": "a@x.test", "email": "b@x.test"}]', encoding="utf-8")
    (row,) = rows_of(path, "json")
    assert row.problem == "has the key 'email' more than once"


def test_json_element_that_is_not_an_object_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "r.json"
    path.write_text('[{"email": "a@x.test"}, "b@x.test"]', encoding="utf-8")
    assert rows_of(path, "json")[1].problem == "is not a JSON object"


@pytest.mark.parametrize(("content", "message"), [
    ('{"email": "a@x.test"}', "expected a JSON array"),
    ('[{"email": "a@x.test"} {"email": "b"}]', "expected ',' or ']'"),
    ('[{"email": "a@x.test"', "not valid JSON"),
    ("", "empty"),
])
def test_broken_json_array_is_an_input_error(tmp_path: Path, content: str,
                                             message: str) -> None:
    path = tmp_path / "r.json"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(InputError, match=message):
        rows_of(path, "json")


def test_json_lines_reports_a_bad_line_and_keeps_reading(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl"
    path.write_text('{"email": "a@x.test"}\n\n{oops\n{"email": "b@x.test"}\n',
                    encoding="utf-8")
    rows = rows_of(path, "jsonl")
    assert [r.line for r in rows] == [1, 3, 4]
    assert rows[1].problem is not None and rows[1].problem.startswith("is not valid JSON")
    assert rows[2].fields == {"email": "b@x.test"}


def _check(fields: dict[str, object]) -> Recipient | str:
    from campaign_tool.recipients import RawRow

    return check_row(RawRow(1, 2, dict(fields)), SPEC)


@pytest.mark.parametrize(("fields", "problem"), [
    ({"email": "bob@example.test, carol@example.test"}, "column 'email' holds several"),
    ({"email": '"a@x.test" <b@y.test>'}, "column 'email' holds a display name"),
    ({"email": "undisclosed-recipients:;"}, "column 'email' uses group syntax"),
    ({"name": "Bob"}, "has no 'email' column"),
    ({"email": 17}, "column 'email' must be text"),
    ({"email": "a@x.test", "name": "Alice\nBCC: eve@example.test"},
     "column 'name' contains a line break"),
    ({"email": "a@x.test", "name": "Alice <eve@example.test>"},
     "column 'name' looks like it holds an address"),
    ({"email": "a@x.test", "name": 5}, "column 'name' must be text"),
])
def test_row_problems_are_named_with_the_column(fields: dict[str, object],
                                                problem: str) -> None:
    result = _check(fields)
    assert isinstance(result, str)
    assert result.startswith(problem)


def test_valid_row_becomes_a_recipient() -> None:
    result = _check({"email": "Alice@Example.test", "name": "Alice", "account": "A-1"})
    assert isinstance(result, Recipient)
    assert result.mailbox.key == "alice@example.test"
    assert list(result.private_values(("account",))) == [("account", "A-1")]


def test_suppression_list_ignores_comments_and_keys_case_insensitively(tmp_path: Path) -> None:
    path = tmp_path / "s.txt"
    path.write_text("# opted out\n\nBob@Example.test\n", encoding="utf-8")
    keys, problems = read_suppression(path)
    assert keys == {"bob@example.test"} and problems == []


def test_suppression_line_that_is_not_one_address_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "s.txt"
    path.write_text("a@x.test, b@x.test\n", encoding="utf-8")
    _, problems = read_suppression(path)
    assert problems[0].line == 1 and "several addresses" in problems[0].message
