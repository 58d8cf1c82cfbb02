"""The ``campaign`` command: options in, one library call, output, exit code.

Every command is a thin wrapper over the library; the only logic here is how
results look on a terminal and which exit code they map to.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from campaign_tool import __version__
from campaign_tool.errors import EXIT_USAGE, CampaignError
from campaign_tool.findings import Severity
from campaign_tool.lint import lint as run_lint
from campaign_tool.plan import Envelope, PreflightReport, Skipped, load_campaign, preflight
from campaign_tool.preview import collect_previews, render_text, write_gallery
from campaign_tool.send import SendSummary, deliver_campaign, make_transport
from campaign_tool.transports import DeliveryResult

EXIT_CODES_HELP = """
\b
Exit codes:
  0  success: every recipient served / lint found nothing
  1  finished, but some recipients failed / lint found problems
  2  usage, configuration or input error: nothing was sent
  3  halted: circuit breaker, interrupted, or canary awaiting go-ahead
"""

stdout = Console(highlight=False, soft_wrap=True)
stderr = Console(stderr=True, highlight=False, soft_wrap=True)

F = TypeVar("F", bound=Callable[..., Any])
ConfigArgument = click.argument(
    "config", type=click.Path(path_type=Path, dir_okay=False), metavar="CONFIG")


def _fail(error: CampaignError) -> NoReturn:
    if error.findings:
        for finding in error.findings:
            stderr.print(f"error: {finding.describe()}", markup=False)
    else:
        stderr.print(f"error: {error.message}", markup=False)
    sys.exit(error.exit_code)


@contextmanager
def _errors_to_exit_codes() -> Iterator[None]:
    """Turn library errors into a clear message and the documented exit code."""
    try:
        yield
    except CampaignError as error:
        _fail(error)


@click.group(epilog=EXIT_CODES_HELP, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="campaign")
def main() -> None:
    """Send bulk e-mail campaigns that cannot expose one recipient to another.

    Every message has exactly one recipient, every message is checked for
    other recipients' data before the first one is sent, and nothing is sent
    twice.
    """


@main.command(epilog=EXIT_CODES_HELP)
@ConfigArgument
@click.option("--format", "fmt", type=click.Choice(["text", "json", "github"]),
              default="text", show_default=True,
              help="text for people, json for programs, github for Actions annotations.")
@click.option("--max-per-code", type=click.IntRange(min=1), default=100, show_default=True,
              help="Show at most this many findings of each kind (all are counted).")
def lint(config: Path, fmt: str, max_per_code: int) -> None:
    """Check a campaign without sending: config, templates, every row, every message.

    Example: campaign lint examples/newsletter/campaign.toml --format github
    """
    result = run_lint(config, keep_per_code=max_per_code)
    text = {"json": result.to_json, "github": result.to_github, "text": result.to_text}[fmt]()
    click.echo(text)
    sys.exit(result.exit_code)


@main.command(epilog=EXIT_CODES_HELP)
@ConfigArgument
@click.option("-n", "count", type=click.IntRange(min=1), default=3, show_default=True,
              help="Preview the first N rows.")
@click.option("--recipient", "recipients", multiple=True, metavar="ADDR",
              help="Preview this recipient's message instead (repeatable).")
@click.option("--out", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="Also write each message as .eml and an index.html gallery here.")
def preview(config: Path, count: int, recipients: tuple[str, ...], out: Path | None) -> None:
    """Show exactly what recipients will receive: headers and bodies.

    Example: campaign preview examples/newsletter/campaign.toml -n 2 --out preview/
    """
    with _errors_to_exit_codes():
        campaign = load_campaign(config, for_sending=False)
        previews, findings, missing = collect_previews(campaign, count=count,
                                                       addresses=recipients)
    for finding in findings:
        if finding.severity is not Severity.NOTICE:
            stderr.print(f"{finding.severity.value}: {finding.describe()}", markup=False)
    for preview_item in previews:
        stdout.print(render_text(preview_item), markup=False)
    for address in missing:
        stderr.print(f"error: {address}: no sendable row has this address "
                  "(absent, or its row is invalid: see campaign lint)", markup=False)
    if out is not None:
        written = write_gallery(previews, out, campaign.id)
        stderr.print(f"wrote {len(written) - 1} .eml file(s) and {written[-1]}", markup=False)
    problems = findings.errors + len(missing) + sum(
        1 for p in previews if not isinstance(p.item, Envelope | Skipped))
    sys.exit(1 if problems else 0)


@main.command(epilog=EXIT_CODES_HELP)
@ConfigArgument
@click.option("--dry-run", is_flag=True,
              help="Render and check every message, then stop: nothing is delivered.")
@click.option("--yes", "-y", "assume_yes", is_flag=True,
              help="Send without asking (required for SMTP when not on a terminal).")
def send(config: Path, dry_run: bool, assume_yes: bool) -> None:
    """Check every message, then deliver one private message per recipient.

    Nothing is delivered unless every message passes its checks first.

    Example: campaign send examples/newsletter/campaign.toml
    """
    with _errors_to_exit_codes():
        campaign = load_campaign(config, for_sending=not dry_run)
        stderr.print(f"Checking every message of {campaign.recipients_path} ...", markup=False)
        report = preflight(campaign)
        _print_preflight(report)
        if not report.ok:
            stderr.print("Nothing was sent.", markup=False)
            sys.exit(EXIT_USAGE)
        if dry_run:
            stdout.print(f"Dry run: {report.messages:,} messages would be sent; nothing was "
                      "delivered.", markup=False)
            sys.exit(0)
        assert report.scan is not None
        transport = make_transport(campaign)
        stderr.print(f"Sending {report.messages:,} messages to {transport.description}",
                  markup=False)
        with _progress(report.rows) as advance:
            summary = asyncio.run(deliver_campaign(campaign, report.scan, transport,
                                                   on_result=advance))
        summary.invalid = report.invalid
    _print_summary(summary)
    sys.exit(summary.exit_code)


def _print_preflight(report: PreflightReport) -> None:
    findings = report.findings
    for finding in findings:
        stderr.print(f"{finding.severity.value}: {finding.describe()}", markup=False)
    for code, count in findings.omitted().items():
        stderr.print(f"... and {count:,} more '{code}' findings", markup=False)
    mark = "ok" if report.ok else "FAILED"
    stderr.print(
        f"Preflight {mark}: {report.rows:,} rows, {report.messages:,} messages checked, "
        f"{report.duplicates:,} duplicate, {report.suppressed:,} suppressed, "
        f"{findings.errors:,} error(s) ({report.seconds:.2f} s)", markup=False)


@contextmanager
def _progress(total: int) -> Iterator[Callable[[Envelope | Skipped, DeliveryResult | None],
                                               None]]:
    if not stderr.is_terminal:
        yield lambda item, result: None
        return
    columns = (TextColumn("sending"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn(), TimeRemainingColumn())
    with Progress(*columns, console=stderr, transient=True) as progress:
        task = progress.add_task("send", total=total)
        yield lambda item, result: progress.advance(task)


def _print_summary(summary: SendSummary) -> None:
    parts = [f"{summary.delivered:,} delivered", f"{summary.failed:,} failed"]
    if summary.unknown:
        parts.append(f"{summary.unknown:,} unknown")
    parts += [f"{summary.duplicates:,} duplicate", f"{summary.suppressed:,} suppressed"]
    if summary.invalid:
        parts.append(f"{summary.invalid:,} invalid")
    stdout.print(f"Done in {summary.seconds:.2f} s: {', '.join(parts)} = {summary.accounted:,} "
              f"of {summary.rows:,} rows", markup=False)
    for reason, count in summary.failures.most_common(10):
        stdout.print(f"  failed x{count:,}: {reason}", markup=False)


if __name__ == "__main__":  # pragma: no cover
    main()
