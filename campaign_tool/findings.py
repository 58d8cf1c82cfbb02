"""Findings: one problem (or notice) about a campaign, with where it is and why.

Every check in the pipeline reports through these, so ``lint``, ``preview`` and
``send`` speak the same language and the JSON format stays stable.
"""

from __future__ import annotations

import enum
import os
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any


def display_path(path: Path) -> str:
    """``path`` relative to the working directory when it lies inside it.

    CI annotations and editors expect repository-relative paths.
    """
    try:
        relative = os.path.relpath(path)
    except ValueError:
        return str(path)
    return str(path) if relative.startswith("..") else relative


class Severity(enum.StrEnum):
    """How much a finding matters: errors block sending, warnings do not."""

    ERROR = "error"
    WARNING = "warning"
    NOTICE = "notice"


@dataclass(frozen=True, slots=True)
class Finding:
    """One problem found in a campaign.

    ``row`` is the 1-based data row of the recipient list (the header is not a
    row); ``line`` is the line in ``file`` where the problem starts. Messages never
    quote recipient data: they name the row and the column instead, so findings
    are safe to print in a shared CI log.
    """

    code: str
    message: str
    file: Path | None = None
    line: int | None = None
    row: int | None = None
    severity: Severity = Severity.ERROR

    def location(self) -> str:
        """``file:line`` (or the part of it that is known), for humans."""
        if self.file is None:
            return ""
        shown = display_path(self.file)
        return f"{shown}:{self.line}" if self.line else shown

    def describe(self) -> str:
        """The finding as one line of text: ``file:line: row 3: message``."""
        parts = [p for p in (self.location(), f"row {self.row}" if self.row else "") if p]
        parts.append(self.message)
        return ": ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        """The stable JSON shape documented in the README."""
        return {
            "file": display_path(self.file) if self.file else None,
            "line": self.line,
            "row": self.row,
            "code": self.code,
            "severity": self.severity.value,
            "message": self.message,
        }


class FindingLog:
    """Collects findings, keeping the first ``keep_per_code`` of each code.

    A systematic problem in a million-row list must not print a million lines
    or hold them in memory; the counts stay exact.
    """

    def __init__(self, keep_per_code: int = 100) -> None:
        self.keep_per_code = keep_per_code
        self._kept: list[Finding] = []
        self.counts: Counter[tuple[str, Severity]] = Counter()

    def add(self, finding: Finding) -> None:
        """Record one finding."""
        key = (finding.code, finding.severity)
        self.counts[key] += 1
        if self.counts[key] <= self.keep_per_code:
            self._kept.append(finding)

    def extend(self, findings: Iterable[Finding]) -> None:
        """Record several findings."""
        for finding in findings:
            self.add(finding)

    def __iter__(self) -> Iterator[Finding]:
        return iter(self._kept)

    def __len__(self) -> int:
        return sum(self.counts.values())

    def count(self, severity: Severity) -> int:
        """How many findings of this severity were recorded (kept or not)."""
        return sum(n for (_, sev), n in self.counts.items() if sev == severity)

    @property
    def errors(self) -> int:
        """How many errors were recorded."""
        return self.count(Severity.ERROR)

    @property
    def warnings(self) -> int:
        """How many warnings were recorded."""
        return self.count(Severity.WARNING)

    def omitted(self) -> dict[str, int]:
        """Per code, how many findings were counted but not kept."""
        return {
            code: n - self.keep_per_code
            for (code, _), n in sorted(self.counts.items())
            if n > self.keep_per_code
        }
