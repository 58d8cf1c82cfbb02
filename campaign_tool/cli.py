"""The ``campaign`` command: options in, one library call, output, exit code.

Every command is a thin wrapper over the library; the only logic here is how
results look on a terminal and which exit code they map to.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import time
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
from campaign_tool.audit import verify_chain
from campaign_tool.errors import EXIT_FAILURES, EXIT_HALTED, EXIT_USAGE, CampaignError
from campaign_tool.findings import Severity, display_path
from campaign_tool.lint import lint as run_lint
from campaign_tool.plan import (
    Campaign,
    Envelope,
    PreflightReport,
    Skipped,
    load_campaign,
    preflight,
    seed_campaign,
)
from campaign_tool.preview import collect_previews, render_text, write_gallery
from campaign_tool.report import report_json, summarise
from campaign_tool.scaffold import config_schema_json, init_campaign
from campaign_tool.send import (
    SendOptions,
    SendSummary,
    describe_plan,
    make_transport,
    send_campaign,
    send_seed_canary,
)
from campaign_tool.spool import Spool
from campaign_tool.transports import Transport

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
@click.argument("configs", type=click.Path(path_type=Path, dir_okay=False), nargs=-1,
                required=True, metavar="CONFIG...")
@click.option("--format", "fmt", type=click.Choice(["text", "json", "github"]),
              default="text", show_default=True,
              help="text for people, json for programs, github for Actions annotations.")
@click.option("--max-per-code", type=click.IntRange(min=1), default=100, show_default=True,
              help="Show at most this many findings of each kind (all are counted).")
def lint(configs: tuple[Path, ...], fmt: str, max_per_code: int) -> None:
    """Check a campaign without sending: config, templates, every row, every message.

    Several campaign files may be given (as pre-commit does); the exit code is
    the worst of them, and --format json then prints a list of documents.

    Example: campaign lint examples/newsletter/campaign.toml --format github
    """
    results = [run_lint(config, keep_per_code=max_per_code) for config in configs]
    if fmt == "json":
        documents = [json.loads(result.to_json()) for result in results]
        click.echo(json.dumps(documents[0] if len(documents) == 1 else documents, indent=2,
                              ensure_ascii=False))
    else:
        for result in results:
            click.echo(result.to_github() if fmt == "github" else result.to_text())
    sys.exit(max(result.exit_code for result in results))


@main.command(epilog=EXIT_CODES_HELP)
@click.argument("directory", type=click.Path(path_type=Path, file_okay=False),
                metavar="DIR")
@click.option("--id", "campaign_id", default=None, metavar="ID",
              help="The campaign id (default: from the folder's name).")
def init(directory: Path, campaign_id: str | None) -> None:
    """Start a campaign folder that passes lint and send --dry-run as written.

    Writes campaign.toml, HTML and text templates, a sample recipient list, a
    suppression list and a .gitignore; refuses to overwrite anything.

    Example: campaign init my-campaign
    """
    with _errors_to_exit_codes():
        written = init_campaign(directory, campaign_id)
    for path in written:
        stdout.print(f"wrote {display_path(path)}", markup=False)
    config = display_path(directory / "campaign.toml")
    stdout.print(f"Next: campaign lint {config} && campaign preview {config}", markup=False)


@main.command(epilog=EXIT_CODES_HELP)
def schema() -> None:
    """Print the JSON Schema of campaign.toml, for editors to validate and complete.

    Example: campaign schema > campaign.schema.json
    """
    click.echo(config_schema_json())


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
              help="Send over SMTP without asking (required when not on a terminal).")
@click.option("--canary", type=click.IntRange(min=1), metavar="N", default=None,
              help="Send only the next N messages, then halt (exit 3) until --continue.")
@click.option("--canary-seeds", is_flag=True,
              help="Test send: only the [canary] seed list (allow-listed addresses), then "
                   "halt (exit 3) until --continue.")
@click.option("--continue", "continue_canary", is_flag=True,
              help="Go ahead after a canary: send the rest.")
@click.option("--resend-unknown", is_flag=True,
              help="Also re-send recipients whose earlier delivery is unknown "
                   "(they may receive a second copy).")
@click.option("--retry-failed", is_flag=True,
              help="Retry recipients whose earlier delivery failed transiently.")
@click.option("--accept-changes", is_flag=True,
              help="Resume even though the list or templates changed since the last run.")
def send(config: Path, dry_run: bool, assume_yes: bool, canary: int | None,
         canary_seeds: bool, continue_canary: bool, resend_unknown: bool, retry_failed: bool,
         accept_changes: bool) -> None:
    """Check every message, then deliver one private message per recipient.

    Nothing is delivered unless every message passes its checks first. The
    audit log makes a re-run skip everyone already served.

    Example: campaign send examples/newsletter/campaign.toml
    """
    options = SendOptions(resend_unknown=resend_unknown, retry_failed=retry_failed,
                          canary=canary, continue_canary=continue_canary,
                          accept_changes=accept_changes)
    with _errors_to_exit_codes(), contextlib.ExitStack() as resources:
        campaign = load_campaign(config, for_sending=not dry_run)
        stderr.print(f"Checking every message of {display_path(campaign.recipients_path)} ...",
                     markup=False)
        # The checked messages are kept for the sending phase (not for a dry run,
        # nor for a seed canary, which sends another list).
        spool = None if dry_run or canary_seeds else resources.enter_context(
            Spool(campaign.audit_path.parent))
        report = preflight(campaign, keep=spool)
        _print_preflight(report)
        if not report.ok:
            stderr.print("Nothing was sent.", markup=False)
            sys.exit(EXIT_USAGE)
        if dry_run:
            stdout.print(f"Dry run: {report.messages:,} messages would be sent; nothing was "
                         "delivered.", markup=False)
            sys.exit(0)
        transport = make_transport(campaign)
        if canary_seeds:
            summary = _send_seeds(campaign, transport, assume_yes)
        else:
            assert spool is not None
            if transport.real:
                _confirm(describe_plan(campaign, transport, report.messages), assume_yes)
            stderr.print(f"Sending to {transport.description}; audit log "
                         f"{display_path(campaign.audit_path)}", markup=False)
            with _progress(report.messages) as on_progress:
                summary = asyncio.run(send_campaign(campaign, report, options, spool=spool,
                                                    transport=transport,
                                                    on_progress=on_progress))
    _print_summary(summary)
    sys.exit(summary.exit_code)


def _send_seeds(campaign: Campaign, transport: Transport, assume_yes: bool) -> SendSummary:
    """The --canary-seeds path: preflight the seed list, confirm, send it only."""
    seeds = seed_campaign(campaign)
    stderr.print(f"Test send: checking the seed list {display_path(seeds.recipients_path)} ...",
                 markup=False)
    with Spool(seeds.audit_path.parent) as spool:
        report = preflight(seeds, keep=spool)
        _print_preflight(report)
        if not report.ok:
            stderr.print("Nothing was sent.", markup=False)
            sys.exit(EXIT_USAGE)
        if transport.real:
            _confirm(describe_plan(seeds, transport, report.messages) + " (seed list only)",
                     assume_yes)
        with _progress(report.messages) as on_progress:
            return asyncio.run(send_seed_canary(campaign, seeds, report, spool=spool,
                                                transport=transport, on_progress=on_progress))


def _confirm(plan: str, assume_yes: bool) -> None:
    stderr.print(plan, markup=False)
    if assume_yes:
        return
    if not sys.stdin.isatty():
        stderr.print("error: refusing to send without confirmation: there is no terminal to "
                     "ask on; pass --yes to send anyway. Nothing was sent.", markup=False)
        sys.exit(EXIT_USAGE)
    if not click.confirm("Send now?", default=False, err=True):
        stderr.print("Not confirmed. Nothing was sent.", markup=False)
        sys.exit(EXIT_HALTED)


@main.group(epilog=EXIT_CODES_HELP)
def audit() -> None:
    """Check an audit log. Example: campaign audit verify newsletter-2026-11.audit.jsonl"""


@audit.command("verify", epilog=EXIT_CODES_HELP)
@click.argument("log", type=click.Path(path_type=Path, dir_okay=False, exists=True),
                metavar="LOG")
def audit_verify(log: Path) -> None:
    """Check the hash chain of an audit log: exit 0 intact, 1 tampered.

    Example: campaign audit verify examples/newsletter/newsletter-2026-11.audit.jsonl
    """
    entries, problems, torn = verify_chain(log)
    for problem in problems:
        stdout.print(f"{display_path(log)}:{problem.line}: {problem.reason}", markup=False)
    if torn:
        stdout.print(f"{display_path(log)}: the last line is incomplete (a write cut short by "
                     "a crash); the next send removes it", markup=False)
    if problems:
        stdout.print(f"TAMPERED: {len(problems)} problem(s) in {entries:,} entries",
                     markup=False)
        sys.exit(EXIT_FAILURES)
    stdout.print(f"ok: {entries:,} entries, hash chain intact", markup=False)


@main.command(epilog=EXIT_CODES_HELP)
@click.argument("log", type=click.Path(path_type=Path, dir_okay=False, exists=True),
                metavar="LOG")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text",
              show_default=True, help="text for people, json for programs.")
def report(log: Path, fmt: str) -> None:
    """Summarise an audit log: final states, failures by SMTP code, rate. No addresses.

    Example: campaign report examples/newsletter/newsletter-2026-11.audit.jsonl
    """
    with _errors_to_exit_codes():
        summary = summarise(log)
    click.echo(report_json(summary) if fmt == "json" else summary.to_text())


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
def _progress(total: int) -> Iterator[Callable[[SendSummary], None]]:
    """A rich progress bar on a terminal; a plain line every few seconds otherwise."""
    if not stderr.is_terminal:
        last = [time.monotonic()]
        started = last[0]

        def plain(summary: SendSummary) -> None:
            now = time.monotonic()
            if now - last[0] >= _PLAIN_PROGRESS_EVERY:
                last[0] = now
                stderr.print(_progress_line(summary, total, now - started), markup=False)

        yield plain
        return
    columns = (TextColumn("[bold]sending"), BarColumn(), MofNCompleteColumn(),
               TextColumn("{task.fields[detail]}"), TimeElapsedColumn(),
               TimeRemainingColumn())
    with Progress(*columns, console=stderr, transient=True) as progress:
        task = progress.add_task("send", total=total, detail="")
        started = time.monotonic()

        def rich_update(summary: SendSummary) -> None:
            done = summary.delivered + summary.failed + summary.unknown
            elapsed = max(time.monotonic() - started, 1e-6)
            fresh = done - summary.delivered_before - summary.failed_before \
                - summary.unknown_before
            progress.update(task, completed=done,
                            detail=f"failed {summary.failed:,} · {fresh / elapsed:,.0f}/s")

        yield rich_update


_PLAIN_PROGRESS_EVERY = 5.0


def _progress_line(summary: SendSummary, total: int, elapsed: float) -> str:
    done = summary.delivered + summary.failed + summary.unknown
    fresh = done - summary.delivered_before - summary.failed_before - summary.unknown_before
    rate = fresh / elapsed if elapsed > 0 else 0.0
    remaining = max(total - done, 0)
    eta = f"{remaining / rate:,.0f} s" if rate > 0 else "?"
    share = done / total if total else 1.0
    return (f"progress: {done:,}/{total:,} ({share:.0%}), delivered {summary.delivered:,}, "
            f"failed {summary.failed:,}, {rate:,.0f} msg/s, ETA {eta}")


def _print_summary(summary: SendSummary) -> None:
    parts = [f"{summary.delivered:,} delivered", f"{summary.failed:,} failed"]
    if summary.unknown:
        parts.append(f"{summary.unknown:,} unknown")
    parts += [f"{summary.duplicates:,} duplicate", f"{summary.suppressed:,} suppressed"]
    if summary.invalid:
        parts.append(f"{summary.invalid:,} invalid")
    if summary.pending:
        parts.append(f"{summary.pending:,} pending")
    stdout.print(f"Done in {summary.seconds:.2f} s: {', '.join(parts)} = {summary.accounted:,} "
                 f"of {summary.rows:,} rows", markup=False)
    if summary.accounted != summary.rows:
        stderr.print(f"error: {summary.rows - summary.accounted:,} row(s) are in no state; "
                     "this is a bug in campaign_tool: please report it", markup=False)
    earlier = [f"{n:,} {what}" for n, what in ((summary.delivered_before, "delivered"),
                                                (summary.failed_before, "failed"),
                                                (summary.unknown_before, "unknown")) if n]
    if earlier:
        stdout.print(f"  from earlier runs: {', '.join(earlier)} (skipped this time)",
                     markup=False)
    if summary.unknown:
        stdout.print("  unknown: the server may or may not have accepted these; they are "
                     "not re-sent unless you pass --resend-unknown", markup=False)
    for reason, count in summary.failures.most_common(10):
        stdout.print(f"  failed x{count:,}: {reason}", markup=False)
    if summary.halted:
        stdout.print(f"HALTED: {summary.halted}. Run the same command again to resume.",
                     markup=False)


if __name__ == "__main__":  # pragma: no cover
    main()
