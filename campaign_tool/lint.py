"""``campaign lint``: every check of a send, nothing sent, findings for machines.

The JSON shape is stable (``version`` 1) and documented in the README; the
``github`` format prints workflow commands that GitHub Actions turns into
annotations on the offending file and line.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from campaign_tool.errors import EXIT_FAILURES, EXIT_OK, EXIT_USAGE, ConfigError, InputError
from campaign_tool.findings import Finding, FindingLog, Severity, display_path
from campaign_tool.plan import PreflightReport, load_campaign, preflight


@dataclass
class LintResult:
    """Findings of one lint run, and how it should exit."""

    config: Path
    findings: FindingLog
    report: PreflightReport | None = None
    unusable: bool = False
    stats: dict[str, int] = field(default_factory=dict)

    @property
    def exit_code(self) -> int:
        """0 clean, 1 errors found, 2 the config itself cannot be used."""
        if self.unusable:
            return EXIT_USAGE
        return EXIT_FAILURES if self.findings.errors else EXIT_OK

    def to_json(self) -> str:
        """The stable machine-readable form (see the README)."""
        document: dict[str, Any] = {
            "version": 1,
            "config": str(self.config),
            "ok": self.exit_code == EXIT_OK,
            "summary": {
                "errors": self.findings.errors,
                "warnings": self.findings.warnings,
                **self.stats,
            },
            "findings": [f.to_dict() for f in self.findings],
            "omitted": self.findings.omitted(),
        }
        return json.dumps(document, indent=2, ensure_ascii=False)

    def to_github(self) -> str:
        """GitHub Actions workflow commands, one per finding."""
        lines = [_github_line(f) for f in self.findings]
        lines.append(self.summary_line())
        return "\n".join(lines)

    def to_text(self) -> str:
        """One line per finding, then a summary line."""
        lines = [f"{f.severity.value}: {f.describe()}" for f in self.findings]
        for code, count in self.findings.omitted().items():
            lines.append(f"... and {count:,} more '{code}' findings")
        lines.append(self.summary_line())
        return "\n".join(lines)

    def summary_line(self) -> str:
        """``lint: 20 rows, 18 messages checked: 0 errors, 1 warning``."""
        errors, warnings = self.findings.errors, self.findings.warnings
        counts = f"{errors} error{'s' * (errors != 1)}, {warnings} warning{'s' * (warnings != 1)}"
        if self.unusable:
            return f"lint: the campaign cannot be checked: {counts}"
        rows, messages = self.stats.get("rows", 0), self.stats.get("messages", 0)
        return f"lint: {rows:,} rows, {messages:,} messages checked: {counts}"


def _escape_data(value: str) -> str:
    return value.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_property(value: str) -> str:
    return _escape_data(value).replace(":", "%3A").replace(",", "%2C")


def _github_line(finding: Finding) -> str:
    command = {Severity.ERROR: "error", Severity.WARNING: "warning",
               Severity.NOTICE: "notice"}[finding.severity]
    properties = []
    if finding.file is not None:
        properties.append(f"file={_escape_property(display_path(finding.file))}")
    if finding.line:
        properties.append(f"line={finding.line}")
    properties.append(f"title={_escape_property(finding.code)}")
    message = f"row {finding.row}: {finding.message}" if finding.row else finding.message
    return f"::{command} {','.join(properties)}::{_escape_data(message)}"


def lint(config_path: Path, *, keep_per_code: int = 100) -> LintResult:
    """Run every check of a send over the whole campaign, without sending."""
    findings = FindingLog(keep_per_code)
    try:
        campaign = load_campaign(config_path, for_sending=False)
    except ConfigError as error:
        findings.extend(error.findings or [Finding("config-invalid", error.message,
                                                   file=config_path)])
        return LintResult(config_path, findings, unusable=True)
    try:
        report = preflight(campaign, keep_per_code=keep_per_code)
    except InputError as error:
        findings.extend(campaign.notices)
        findings.extend(error.findings)
        return LintResult(config_path, findings)
    stats = {"rows": report.rows, "messages": report.messages,
             "duplicates": report.duplicates, "suppressed": report.suppressed,
             "invalid_rows": report.invalid}
    return LintResult(config_path, report.findings, report=report, stats=stats)
