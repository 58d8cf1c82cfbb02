"""Summaries of an audit log: counts per final state, failures by code, no addresses.

Reads only the log (no key needed) and never prints an address: pseudonyms are
counted, not shown, so a report can be shared.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from campaign_tool.audit import (
    ChainProblem,
    RecipientState,
    read_entries,
    recipient_state,
    verify_chain,
)
from campaign_tool.errors import AuditLogError

FINAL_STATES = ("delivered", "failed", "unknown", "suppressed", "duplicate", "invalid",
                "pending")


@dataclass
class AuditReport:
    """What an audit log says about a campaign, across all its runs."""

    path: Path
    entries: int
    chain_ok: bool
    problems: list[ChainProblem]
    torn_tail: bool
    campaign: str | None = None
    runs: int = 0
    rows: int = 0
    states: Counter[str] = field(default_factory=Counter)
    failures: Counter[str] = field(default_factory=Counter)
    retries: int = 0
    halts: list[str] = field(default_factory=list)
    first: str | None = None
    last: str | None = None
    send_seconds: float = 0.0

    @property
    def rate(self) -> float:
        """Messages delivered per second of sending time."""
        return self.states["delivered"] / self.send_seconds if self.send_seconds else 0.0

    def to_dict(self) -> dict[str, Any]:
        """The stable JSON shape (``version`` 1)."""
        return {
            "version": 1, "log": str(self.path), "campaign": self.campaign,
            "entries": self.entries, "chain_ok": self.chain_ok,
            "runs": self.runs, "rows": self.rows,
            "states": {state: self.states.get(state, 0) for state in FINAL_STATES},
            "failures_by_code": dict(self.failures.most_common()),
            "retries": self.retries, "halts": self.halts,
            "first_entry": self.first, "last_entry": self.last,
            "send_seconds": round(self.send_seconds, 3),
            "delivered_per_second": round(self.rate, 1),
        }

    def to_text(self) -> str:
        """A short human summary."""
        lines = [f"campaign {self.campaign or '?'}: {self.runs} run(s), {self.rows:,} rows, "
                 f"{self.entries:,} log entries, chain "
                 + ("intact" if self.chain_ok else "BROKEN (run campaign audit verify)")]
        lines.append("  " + ", ".join(f"{self.states.get(s, 0):,} {s}" for s in FINAL_STATES))
        if self.failures:
            lines.append("  failures by code:")
            lines.extend(f"    {code}: {count:,}" for code, count in self.failures.most_common())
        if self.retries:
            lines.append(f"  retries: {self.retries:,}")
        for reason in self.halts:
            lines.append(f"  halted: {reason}")
        if self.first and self.last:
            lines.append(f"  from {self.first} to {self.last}; {self.send_seconds:,.1f} s "
                         f"sending, {self.rate:,.1f} delivered/s")
        return "\n".join(lines)


def summarise(path: Path) -> AuditReport:
    """Read a whole audit log into a report. Raises AuditLogError if unreadable."""
    try:
        entries, problems, torn = verify_chain(path)
    except OSError as error:
        raise AuditLogError(f"{path}: cannot read: {error.strerror}") from None
    report = AuditReport(path=path, entries=entries, chain_ok=not problems,
                         problems=problems, torn_tail=torn)
    final: dict[str, tuple[str, str | None]] = {}
    duplicates: set[int] = set()
    invalid = 0
    for _, entry, _raw in read_entries(path):
        if entry is None:
            continue
        _apply(report, entry, final, duplicates)
        if entry.get("ev") == "run-end":
            invalid = int(entry.get("invalid", 0))
        elif entry.get("ev") == "run":
            duplicates.clear()
    report.states.update(state for state, _ in final.values())
    report.failures.update(code for state, code in final.values()
                           if state == "failed" and code is not None)
    report.states["duplicate"] = len(duplicates)
    report.states["invalid"] = invalid
    accounted = sum(report.states[s] for s in FINAL_STATES if s != "pending")
    report.states["pending"] = max(0, report.rows - accounted)
    return report


def _apply(report: AuditReport, entry: dict[str, Any], final: dict[str, tuple[str, str | None]],
           duplicates: set[int]) -> None:
    event = entry.get("ev")
    moment = entry.get("t")
    if isinstance(moment, str):
        report.first = report.first or moment
        report.last = moment
    rcpt = entry.get("rcpt")
    if event == "run":
        report.runs += 1
        report.campaign = report.campaign or entry.get("campaign")
        report.rows = int(entry.get("rows", report.rows))
    elif event == "run-end":
        report.send_seconds += float(entry.get("seconds", 0.0))
    elif event == "halted":
        report.halts.append(str(entry.get("reason")))
    elif event == "duplicate" and isinstance(entry.get("row"), int):
        duplicates.add(entry["row"])
    report.retries += event == "retry"
    state = recipient_state(entry)
    if not isinstance(rcpt, str) or state is None:
        return
    if state is RecipientState.OPEN:
        final.pop(rcpt, None)  # still to be sent: pending
    elif state in (RecipientState.FAILED_PERMANENT, RecipientState.FAILED_TRANSIENT):
        code = entry.get("code")
        final[rcpt] = ("failed", str(code) if code else f"no reply ({entry.get('stage', '?')})")
    else:
        final[rcpt] = (_STATE_NAMES[state], None)


_STATE_NAMES = {RecipientState.DELIVERED: "delivered", RecipientState.UNKNOWN: "unknown",
                RecipientState.SUPPRESSED: "suppressed"}


def report_json(report: AuditReport) -> str:
    """The report as indented JSON."""
    return json.dumps(report.to_dict(), indent=2)
