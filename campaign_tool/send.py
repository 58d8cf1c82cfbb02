"""Orchestration of a send: resume, concurrency, rate limits, retries, breaker, stop.

Nothing is delivered unless the preflight over the whole list was clean (the
caller runs it first and hands over its report and the spool it filled). One
producer reads the checked items in order and ``concurrency`` workers, each
with its own transport session, deliver from a short queue. The audit log
decides who is skipped on a re-run, and records every recipient's fate. Every
row is counted in exactly one state as it is settled, pending included, so the
summary adding up to the number of rows is a check, not an assumption.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import random
import signal
import time
from collections import Counter, deque
from collections.abc import Callable, Coroutine, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_result,
    stop_after_attempt,
    stop_after_delay,
    wait_exponential_jitter,
)

from campaign_tool.audit import (
    AuditLog,
    History,
    RecipientState,
    file_digest,
    key_id,
    pseudonym_key,
)
from campaign_tool.config import MaildirTransport as MaildirSettings
from campaign_tool.config import SmtpTransport as SmtpSettings
from campaign_tool.errors import (
    EXIT_FAILURES,
    EXIT_HALTED,
    EXIT_OK,
    AuditLogError,
    ConfigError,
    PreflightFailed,
    SourceChanged,
)
from campaign_tool.plan import (
    Campaign,
    Envelope,
    Fate,
    PreflightReport,
    Rejected,
    Scan,
    Skipped,
    plan_messages,
)
from campaign_tool.spool import Spool
from campaign_tool.transports import DeliveryResult, DeliveryState, Session, Stage, Transport
from campaign_tool.transports.maildir import MaildirTransport
from campaign_tool.transports.smtp import SmtpTransport

Sleep = Callable[[float], Coroutine[Any, Any, None]]
Clock = Callable[[], float]


@dataclass(frozen=True)
class SendOptions:
    """What the user asked of this run beyond the campaign file."""

    resend_unknown: bool = False
    retry_failed: bool = False
    canary: int | None = None
    continue_canary: bool = False
    accept_changes: bool = False


@dataclass
class SendSummary:
    """Every row of the list in exactly one state; ``accounted`` must equal ``rows``.

    ``pending`` rows were not sent because the run halted; a re-run sends
    them. ``*_before`` count rows whose state comes from earlier runs.
    """

    rows: int
    invalid: int = 0
    delivered: int = 0
    failed: int = 0
    unknown: int = 0
    suppressed: int = 0
    duplicates: int = 0
    pending: int = 0
    delivered_before: int = 0
    failed_before: int = 0
    unknown_before: int = 0
    attempted: int = 0
    seconds: float = 0.0
    halted: str | None = None
    failures: Counter[str] = field(default_factory=Counter)

    @property
    def accounted(self) -> int:
        """Rows counted in some state, pending included; ``rows`` when none was lost."""
        return (self.invalid + self.delivered + self.failed + self.unknown + self.suppressed
                + self.duplicates + self.pending)

    @property
    def exit_code(self) -> int:
        """3 halted, 1 some recipients failed or are unknown, else 0."""
        if self.halted:
            return EXIT_HALTED
        return EXIT_FAILURES if self.failed or self.unknown else EXIT_OK

    def counts(self) -> dict[str, int]:
        """The final-state counts, as the audit log's run-end entry stores them."""
        return {"rows": self.rows, "delivered": self.delivered, "failed": self.failed,
                "unknown": self.unknown, "suppressed": self.suppressed,
                "duplicate": self.duplicates, "invalid": self.invalid,
                "pending": self.pending}


class RateLimiter:
    """Spaces events ``1/rate`` seconds apart: smooth, never a burst of a second.

    Idle time is not saved up, so a pause is not followed by a burst. ``pause``
    pushes the next slot back when a server asks to slow down.
    """

    def __init__(self, rate: float | None, *, clock: Clock, sleep: Sleep) -> None:
        self.interval = 1.0 / rate if rate else 0.0
        self._clock, self._sleep = clock, sleep
        self._next = 0.0

    async def acquire(self) -> None:
        """Wait for this caller's slot."""
        now = self._clock()
        slot = max(now, self._next)
        if self.interval:
            self._next = slot + self.interval
        if slot > now:
            await self._sleep(slot - now)

    def pause(self, seconds: float) -> None:
        """Let nothing through for ``seconds`` (a server said to slow down)."""
        self._next = max(self._next, self._clock() + seconds)

    @property
    def paused(self) -> bool:
        """True while a pause (or the spacing) still holds the next slot back."""
        return self._next > self._clock()


class Breaker:
    """Trips when permanent failures reach ``threshold`` of the last ``window`` outcomes."""

    def __init__(self, window: int, threshold: float, min_messages: int) -> None:
        self._outcomes: deque[bool] = deque(maxlen=window)
        self.threshold, self.min_messages = threshold, min_messages
        self._failures = 0

    def record(self, permanent_failure: bool) -> str | None:
        """Add an outcome; returns the reason when the breaker trips."""
        if len(self._outcomes) == self._outcomes.maxlen and self._outcomes[0]:
            self._failures -= 1
        self._outcomes.append(permanent_failure)
        self._failures += permanent_failure
        seen = len(self._outcomes)
        if seen >= self.min_messages and self._failures / seen >= self.threshold:
            return (f"circuit breaker: {self._failures} of the last {seen} messages failed "
                    f"permanently ({self._failures / seen:.0%} >= {self.threshold:.0%})")
        return None


def make_transport(campaign: Campaign) -> Transport:
    """The transport the campaign file asks for (the SMTP password from its variable)."""
    settings = campaign.config.transport
    if isinstance(settings, MaildirSettings):
        return MaildirTransport(settings.path)
    assert isinstance(settings, SmtpSettings)
    password = None
    if settings.password_env is not None:
        password = os.environ.get(settings.password_env)
        if not password:
            raise ConfigError(f"{campaign.config_path}: key 'transport.password_env': "
                              f"${settings.password_env} is not set")
    return SmtpTransport(settings, password=password,
                         messages_per_connection=campaign.config.send.messages_per_connection)


def campaign_fingerprint(campaign: Campaign) -> dict[str, str]:
    """Digests of what decides message content, to notice changes between runs."""
    config = campaign.config
    content = hashlib.sha256()
    for path in campaign.renderer.template_files:
        content.update(path.read_bytes())
    relevant = {"subject": config.campaign.subject, "sender": config.sender.model_dump(),
                "headers": config.headers, "columns": config.recipients.model_dump(
                    include={"email_column", "name_column", "private_columns"}),
                "unsubscribe": config.unsubscribe.url if config.unsubscribe else None}
    content.update(json.dumps(relevant, sort_keys=True, default=str).encode())
    return {"list": file_digest(campaign.recipients_path), "message": content.hexdigest()}


def open_audit(campaign: Campaign) -> tuple[AuditLog, History]:
    """Open the campaign's audit log and check it belongs to this campaign and key."""
    key = campaign.audit_key
    if key is None:
        raise ConfigError(f"{campaign.config_path}: no audit key (set "
                          f"${campaign.config.audit.key_env} or audit.key_file)")
    audit, history = AuditLog.open(campaign.audit_path, key=key,
                                   cleartext=campaign.config.audit.cleartext)
    try:
        if history.campaign is not None and history.campaign != campaign.id:
            raise AuditLogError(f"{campaign.audit_path}: this audit log belongs to campaign "
                                f"'{history.campaign}', not '{campaign.id}'")
        if history.key_id is not None and history.key_id != key_id(key):
            raise AuditLogError(
                f"{campaign.audit_path}: written with a different audit key, so nobody "
                "could be recognised as already served; restore the key "
                f"(${campaign.config.audit.key_env} or {campaign.config.audit.key_file})")
    except AuditLogError:
        audit.close_sync()
        raise
    return audit, history


def check_changes(campaign: Campaign, history: History, fingerprint: dict[str, str],
                  options: SendOptions) -> list[str]:
    """What changed since the last run; raises unless ``accept_changes``."""
    if history.fingerprint is None or not history.served:
        return []
    changed = [name for name, digest in fingerprint.items()
               if history.fingerprint.get(name) != digest]
    if not changed:
        return []
    what = {"list": "the recipient list", "message": "the templates or message settings"}
    described = " and ".join(what.get(name, name) for name in changed)
    if not options.accept_changes:
        raise SourceChanged(
            f"{described} changed since the last run of '{campaign.id}', which already "
            f"served {history.served:,} recipients; nothing was sent. Re-run with "
            "--accept-changes to resume by address (recipients already served stay "
            "skipped), or start a new campaign id.")
    return [f"{described} changed since the last run; resuming by address"]


class CampaignRun:
    """One run of ``campaign send`` after a clean preflight.

    ``clock`` and ``sleep`` are injectable so tests can fake time; everything
    else (the transport, the audit log, the plan) is real.
    """

    def __init__(self, campaign: Campaign, items: Iterable[Envelope | Skipped], *,
                 rows: int, invalid: int, transport: Transport, audit: AuditLog,
                 history: History, options: SendOptions,
                 fingerprint: dict[str, str] | None = None,
                 on_progress: Callable[[SendSummary], None] | None = None,
                 clock: Clock = time.monotonic, sleep: Sleep = asyncio.sleep) -> None:
        self.campaign, self.items, self.transport = campaign, items, transport
        self.audit, self.history, self.options = audit, history, options
        self.fingerprint = fingerprint or {}
        self.settings = campaign.config.send
        self.summary = SendSummary(rows=rows, invalid=invalid)
        self._on_progress = on_progress
        self._clock, self._sleep = clock, sleep
        self._limiter = RateLimiter(self.settings.rate, clock=clock, sleep=sleep)
        self._domain_limiters: dict[str, RateLimiter] = {}
        breaker = campaign.config.breaker
        self._breaker = Breaker(breaker.window, breaker.threshold, breaker.min_messages)
        self._stop: asyncio.Event | None = None
        self._workers: list[asyncio.Task[None]] = []
        self._queue: asyncio.Queue[_Work | None] | None = None
        self._error: BaseException | None = None
        self._signals = 0

    # -- the run ---------------------------------------------------------

    async def run(self) -> SendSummary:
        """Deliver everything still due; returns the summary (``halted`` if stopped)."""
        started = self._clock()
        self._stop = asyncio.Event()
        await self.audit.start()
        self._log_run_start()
        if self.history.canary_pending and not self.options.continue_canary:
            self._halt(f"a canary of {self.history.canary_sent:,} messages was sent and "
                       "awaits go-ahead: check it, then run again with --continue")
        self._install_signal_handlers()
        try:
            if not self._stop.is_set():
                await self.transport.open()
                await self._deliver_all()
        finally:
            self._remove_signal_handlers()
            self.summary.seconds = self._clock() - started
            self.audit.append("run-end", **self.summary.counts(),
                              halted=self.summary.halted,
                              seconds=round(self.summary.seconds, 3))
            with contextlib.suppress(Exception):
                await self.transport.close()
            await self.audit.close()
        return self.summary

    def _log_run_start(self) -> None:
        assert self.campaign.audit_key is not None
        options = {k: v for k, v in vars(self.options).items() if v}
        self.audit.append(
            "run", campaign=self.campaign.id, version=1, key_id=key_id(self.campaign.audit_key),
            pseudonyms="cleartext" if self.audit.cleartext else "hmac-sha256",
            fingerprint=self.fingerprint, rows=self.summary.rows,
            transport=self.transport.description, options=options or None,
            pid=os.getpid())
        if self.options.continue_canary and self.history.canary_pending:
            self.audit.append("continue")

    async def _deliver_all(self) -> None:
        assert self._stop is not None
        queue: asyncio.Queue[_Work | None] = asyncio.Queue(
            maxsize=max(2, self.settings.concurrency * 2))
        self._queue = queue
        self._workers = [asyncio.create_task(self._worker(queue), name=f"worker-{n}")
                         for n in range(self.settings.concurrency)]
        canary_sent = read = 0
        try:
            for item in self.items:
                read += 1
                if self._stop.is_set():
                    self.summary.pending += 1
                    break
                if isinstance(item, Skipped):
                    self._record_skip(item)
                    continue
                fields = self.audit.recipient_fields(item.address_key)
                if not self._due(fields["rcpt"]):
                    continue
                if self.options.canary is not None and canary_sent >= self.options.canary:
                    self.summary.pending += 1
                    break
                canary_sent += 1
                await queue.put(_Work(item, fields))
            # Rows the producer never read (it stopped early) are pending too.
            self.summary.pending += self.summary.rows - self.summary.invalid - read
        finally:
            if self._stop.is_set():
                self._drain()
            for _ in self._workers:
                await queue.put(None)
            await self._wait_for_workers()
        if self._error is not None:
            raise self._error
        if self.options.canary is not None and not self._stop.is_set():
            self.audit.append("canary", sent=canary_sent)
            self._halt(f"canary: {canary_sent:,} messages sent; check them, then run again "
                       "with --continue to send the rest")

    async def _wait_for_workers(self) -> None:
        results = await asyncio.gather(*self._workers, return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException) and \
                    not isinstance(result, asyncio.CancelledError):
                raise result

    def _due(self, pseudonym: str) -> bool:
        """Whether this recipient still needs a message; counts those who do not."""
        state = self.history.states.get(pseudonym_key(pseudonym))
        summary = self.summary
        if state is RecipientState.DELIVERED:
            summary.delivered += 1
            summary.delivered_before += 1
        elif state is RecipientState.UNKNOWN and not self.options.resend_unknown:
            summary.unknown += 1
            summary.unknown_before += 1
        elif state is RecipientState.FAILED_PERMANENT or (
                state is RecipientState.FAILED_TRANSIENT and not self.options.retry_failed):
            summary.failed += 1
            summary.failed_before += 1
            summary.failures["(failed in an earlier run)"] += 1
        else:
            return True
        self._progress()
        return False

    def _record_skip(self, item: Skipped) -> None:
        fields = self.audit.recipient_fields(item.address_key)
        if item.fate is Fate.DUPLICATE:
            self.summary.duplicates += 1
            self.audit.append("duplicate", row=item.row, of=item.duplicate_of, **fields)
        else:
            self.summary.suppressed += 1
            self.audit.append("suppressed", row=item.row, **fields)
        self._progress()

    # -- one worker ------------------------------------------------------

    async def _worker(self, queue: asyncio.Queue[_Work | None]) -> None:
        assert self._stop is not None
        session = self.transport.session()
        try:
            while True:
                work = await queue.get()
                if work is None:
                    return
                if self._stop.is_set():
                    self.summary.pending += 1  # a re-run sends it
                    continue
                try:
                    await self._deliver(session, work.envelope, work.fields)
                except Exception as error:  # noqa: BLE001 - kept, re-raised after the run
                    if self._error is None:
                        self._error = error
                    self._halt(f"stopped by an error: {error}")
        finally:
            with contextlib.suppress(Exception):
                await asyncio.shield(session.close())

    async def _deliver(self, session: Session, envelope: Envelope,
                       fields: dict[str, str]) -> None:
        attempt = 0
        marked = in_data = False

        async def one_attempt() -> DeliveryResult:
            nonlocal attempt, marked, in_data
            attempt += 1
            in_data = False
            if self._limiter.interval or self._limiter.paused:
                await self._limiter.acquire()
            if self.settings.domain_rate:
                await self._domain_limiter(envelope.domain).acquire()
            # "sending" is appended before MAIL FROM and made durable before DATA:
            # its fsync overlaps the MAIL and RCPT round trips instead of stalling
            # every connection at the same point.
            seq = self.audit.append("sending", row=envelope.row, attempt=attempt,
                                    mid=envelope.message_id, **fields)
            marked = True

            async def before_data() -> None:
                nonlocal in_data
                await self.audit.durable(seq)
                in_data = True

            return await session.attempt(envelope, before_data)

        self.summary.attempted += 1
        started = time.monotonic()
        try:
            # The first attempt runs bare; tenacity takes over only for retries, so
            # the common case pays nothing for the retry machinery.
            result = await one_attempt()
            if self._retryable(result):
                result = await self._retrying(envelope, fields, one_attempt, result, started)
        except _StopRequested:
            self.summary.pending += 1
            self.audit.append("deferred", row=envelope.row, attempt=attempt,
                              text="halted while waiting to retry", **fields)
            return
        except asyncio.CancelledError:
            if in_data:
                self._finish(envelope, fields, attempt, DeliveryResult(
                    DeliveryState.UNKNOWN, Stage.DATA,
                    text="interrupted during DATA: the server may or may not have it"))
            else:
                self.summary.pending += 1
                if marked:
                    self.audit.append("deferred", row=envelope.row, attempt=attempt,
                                      text="interrupted before DATA", **fields)
            raise
        if result.stage is Stage.CONNECT and result.state is DeliveryState.FAILED:
            # The server could not be reached (or refused us) across every retry:
            # an outage, not this recipient's failure. Stop; a re-run resumes.
            self.summary.pending += 1
            self.audit.append("deferred", row=envelope.row, attempt=attempt,
                              text=self.audit.server_text(result.text), **fields)
            self._halt(f"SMTP server unusable: {result.text}")
            return
        self._finish(envelope, fields, attempt, result)

    async def _retrying(self, envelope: Envelope, fields: dict[str, str],
                        one_attempt: Callable[[], Coroutine[Any, Any, DeliveryResult]],
                        first: DeliveryResult, started: float) -> DeliveryResult:
        """Retries after a transient first failure: backoff with jitter, bounded.

        The first attempt already happened, so it counts against both bounds,
        and the waits continue its exponential series (initial, 2x, 4x ...).
        """
        settings = self.settings
        if settings.max_attempts <= 1:
            return first
        first_wait = min(settings.retry_max,
                         settings.retry_initial + random.uniform(0, settings.retry_initial))
        self._note_retry(envelope, fields, first, 1, first_wait)
        await self._interruptible_sleep(first_wait)
        remaining = settings.max_retry_seconds - (time.monotonic() - started)
        retrying = AsyncRetrying(
            retry=retry_if_result(self._retryable),
            stop=(stop_after_attempt(settings.max_attempts - 1)
                  | stop_after_delay(max(0.0, remaining))),
            wait=wait_exponential_jitter(multiplier=settings.retry_initial * 2,
                                         max=settings.retry_max,
                                         jitter=settings.retry_initial),
            sleep=self._interruptible_sleep,
            before_sleep=lambda state: self._log_retry(envelope, fields, state),
            retry_error_callback=lambda state: state.outcome.result() if state.outcome
            else None)
        result: DeliveryResult = await retrying(one_attempt)
        return result

    def _retryable(self, result: DeliveryResult) -> bool:
        if result.fatal or (self._stop is not None and self._stop.is_set()):
            return False
        return result.state is DeliveryState.FAILED and result.transient

    def _log_retry(self, envelope: Envelope, fields: dict[str, str],
                   state: RetryCallState) -> None:
        result = state.outcome.result() if state.outcome else None
        wait = state.next_action.sleep if state.next_action else 0.0
        if isinstance(result, DeliveryResult):
            # tenacity counts from the second attempt: the first ran before it.
            self._note_retry(envelope, fields, result, state.attempt_number + 1, wait)

    def _note_retry(self, envelope: Envelope, fields: dict[str, str], result: DeliveryResult,
                    attempt: int, wait: float) -> None:
        self.audit.append("retry", row=envelope.row, attempt=attempt,
                          stage=result.stage.value, code=result.code,
                          text=self.audit.server_text(result.text),
                          wait=round(wait, 3), **fields)
        if result.code == 421 or (result.code in (450, 451) and result.stage is Stage.RCPT):
            # The server asked us to slow down: hold back everyone, not just this one.
            self._limiter.pause(wait)

    async def _interruptible_sleep(self, seconds: float) -> None:
        assert self._stop is not None
        stop = asyncio.create_task(self._stop.wait())
        pause = asyncio.create_task(self._sleep(seconds))
        try:
            await asyncio.wait({stop, pause}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()
            pause.cancel()
        if self._stop.is_set():
            raise _StopRequested

    def _domain_limiter(self, domain: str) -> RateLimiter:
        limiter = self._domain_limiters.get(domain)
        if limiter is None:
            limiter = RateLimiter(self.settings.domain_rate, clock=self._clock,
                                  sleep=self._sleep)
            self._domain_limiters[domain] = limiter
        return limiter

    def _finish(self, envelope: Envelope, fields: dict[str, str], attempt: int,
                result: DeliveryResult) -> None:
        text = self.audit.server_text(result.text)
        summary = self.summary
        if result.state is DeliveryState.DELIVERED:
            summary.delivered += 1
            self.audit.append("delivered", row=envelope.row, attempt=attempt, code=result.code,
                              text=text, **fields)
        elif result.state is DeliveryState.UNKNOWN:
            summary.unknown += 1
            self.audit.append("unknown", row=envelope.row, attempt=attempt, text=text,
                              **fields)
        else:
            summary.failed += 1
            reason = f"{result.code} {text}" if result.code else (text or "failed")
            summary.failures[_short(reason)] += 1
            self.audit.append("failed", row=envelope.row, attempt=attempt, code=result.code,
                              text=text, stage=result.stage.value,
                              permanent=result.permanent, **fields)
            if result.fatal:
                self._halt(f"the transport refused us: {result.text}")
        tripped = self._breaker.record(result.permanent)
        if tripped:
            self._halt(tripped)
        self._progress()

    # -- stopping --------------------------------------------------------

    def _halt(self, reason: str) -> None:
        if self._stop is not None and not self._stop.is_set():
            self._stop.set()
            self.summary.halted = reason
            self.audit.append("halted", reason=reason)

    def _install_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.add_signal_handler(signum, self._on_signal, signum)

    def _remove_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.remove_signal_handler(signum)

    def _on_signal(self, signum: int) -> None:
        self._signals += 1
        name = signal.Signals(signum).name
        if self._signals == 1:
            self._halt(f"interrupted ({name}): no new messages were started")
            grace = self.settings.stop_grace
            asyncio.get_running_loop().call_later(grace, self._cancel_workers)
        else:
            self._cancel_workers()

    def _cancel_workers(self) -> None:
        for worker in self._workers:
            worker.cancel()
        self._drain()

    def _drain(self) -> None:
        """Empty the queue: what was queued but not started stays pending."""
        queue = self._queue
        while queue is not None and not queue.empty():
            if queue.get_nowait() is not None:
                self.summary.pending += 1

    def _progress(self) -> None:
        if self._on_progress is not None:
            self._on_progress(self.summary)


@dataclass(frozen=True, slots=True)
class _Work:
    """An envelope on its way to a worker, with its audit fields computed once."""

    envelope: Envelope
    fields: dict[str, str]


class _StopRequested(Exception):
    """Raised inside a retry wait when the run is stopping."""


def _short(reason: str, limit: int = 120) -> str:
    reason = " ".join(reason.split())
    return reason if len(reason) <= limit else reason[: limit - 1] + "…"


def checked_plan(campaign: Campaign, scan: Scan) -> Iterator[Envelope | Skipped]:
    """The plan rendered again (when no spool was kept), refusing any failed row."""
    for item in plan_messages(campaign, scan):
        if isinstance(item, Rejected):
            # The preflight passed this row; only a changed template could fail it.
            raise PreflightFailed(item.finding.describe(), findings=[item.finding])
        yield item


async def send_campaign(campaign: Campaign, report: PreflightReport, options: SendOptions, *,
                        spool: Spool | None = None, transport: Transport | None = None,
                        on_progress: Callable[[SendSummary], None] | None = None,
                        clock: Clock = time.monotonic,
                        sleep: Sleep = asyncio.sleep) -> SendSummary:
    """Open the audit log, check for changes since the last run, and deliver.

    ``report`` is the clean preflight; with ``spool`` (filled by that
    preflight) the checked bytes are sent as they are, else every message is
    rendered again. Raises :class:`AuditLogError`, :class:`SourceChanged` or
    :class:`~campaign_tool.errors.TransportError` before anything is sent.
    """
    assert report.scan is not None and report.ok
    transport = transport or make_transport(campaign)
    fingerprint = campaign_fingerprint(campaign)
    audit, history = open_audit(campaign)
    try:
        notes = check_changes(campaign, history, fingerprint, options)
    except SourceChanged:
        audit.close_sync()
        raise
    items = spool.items() if spool is not None else checked_plan(campaign, report.scan)
    run = CampaignRun(campaign, items, rows=report.rows, invalid=report.invalid,
                      transport=transport, audit=audit, history=history, options=options,
                      fingerprint=fingerprint, on_progress=on_progress, clock=clock,
                      sleep=sleep)
    for note in notes:
        audit.append("note", text=note)
    return await run.run()


async def send_seed_canary(campaign: Campaign, seeds: Campaign, seeds_report: PreflightReport,
                           *, spool: Spool | None = None, transport: Transport | None = None,
                           on_progress: Callable[[SendSummary], None] | None = None
                           ) -> SendSummary:
    """A test send to the allow-listed seed list, then the campaign waits for --continue.

    The seeds get their own audit log; the campaign's log only records that a
    canary went out, so its next run needs ``--continue``.
    """
    summary = await send_campaign(seeds, seeds_report, SendOptions(), spool=spool,
                                  transport=transport, on_progress=on_progress)
    if summary.halted:
        return summary
    audit, _ = open_audit(campaign)
    try:
        assert campaign.audit_key is not None
        audit.append("canary", campaign=campaign.id, key_id=key_id(campaign.audit_key),
                     mode="seeds", sent=summary.delivered, log=seeds.audit_path.name,
                     fingerprint=campaign_fingerprint(campaign))
    finally:
        audit.close_sync()
    summary.halted = (f"canary: the seed list got {summary.delivered:,} messages (log "
                      f"{seeds.audit_path.name}); check them, then run again with --continue")
    return summary


def describe_plan(campaign: Campaign, transport: Transport, messages: int) -> str:
    """What a send is about to do, for the confirmation prompt."""
    sender = campaign.config.sender
    who = f"{sender.name} <{sender.address}>" if sender.name else sender.address
    return (f"About to send campaign '{campaign.id}': up to {messages:,} messages, one per "
            f"recipient, from {who} via {transport.description}.")

