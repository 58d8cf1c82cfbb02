"""Orchestration of a send: preflight first, then deliver every planned envelope.

Nothing is delivered unless the preflight over the whole list was clean. The
summary accounts for every row in exactly one final state.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from campaign_tool.config import MaildirTransport as MaildirSettings
from campaign_tool.errors import EXIT_FAILURES, EXIT_OK, PreflightFailed
from campaign_tool.plan import (
    Campaign,
    Envelope,
    Fate,
    Rejected,
    Scan,
    Skipped,
    plan_messages,
)
from campaign_tool.transports import DeliveryResult, DeliveryState, Transport
from campaign_tool.transports.maildir import MaildirTransport


@dataclass
class SendSummary:
    """Every row of the list in exactly one final state."""

    rows: int
    invalid: int = 0
    delivered: int = 0
    failed: int = 0
    unknown: int = 0
    suppressed: int = 0
    duplicates: int = 0
    seconds: float = 0.0
    failures: Counter[str] = field(default_factory=Counter)

    @property
    def accounted(self) -> int:
        """The number of rows in a final state; equals ``rows`` when all is well."""
        return (self.invalid + self.delivered + self.failed + self.unknown
                + self.suppressed + self.duplicates)

    @property
    def exit_code(self) -> int:
        """0 when nobody failed, 1 otherwise."""
        return EXIT_FAILURES if self.failed or self.unknown else EXIT_OK

    def record(self, item: Envelope | Skipped, result: DeliveryResult | None) -> None:
        """Count one row's final state."""
        if isinstance(item, Skipped):
            if item.fate is Fate.DUPLICATE:
                self.duplicates += 1
            else:
                self.suppressed += 1
            return
        assert result is not None
        if result.state is DeliveryState.DELIVERED:
            self.delivered += 1
        elif result.state is DeliveryState.UNKNOWN:
            self.unknown += 1
        else:
            self.failed += 1
            reason = f"{result.code} {result.text}" if result.code else (result.text or "")
            self.failures[reason] += 1


def make_transport(campaign: Campaign) -> Transport:
    """The transport the campaign file asks for."""
    settings = campaign.config.transport
    assert isinstance(settings, MaildirSettings)
    return MaildirTransport(settings.path)


ProgressCallback = Callable[[Envelope | Skipped, DeliveryResult | None], None]


async def deliver_campaign(campaign: Campaign, scan: Scan, transport: Transport, *,
                           on_result: ProgressCallback | None = None) -> SendSummary:
    """Deliver every planned envelope through ``transport``; count every row.

    Call only after a clean :func:`~campaign_tool.plan.preflight`; ``scan`` is
    the one it made. The plan is re-derived row by row, so a list that changed
    since the preflight stops the run before the changed row.
    """
    started = time.perf_counter()
    summary = SendSummary(rows=scan.rows)
    await transport.open()
    try:
        for item in plan_messages(campaign, scan):
            if isinstance(item, Rejected):
                # The preflight passed this row; only a changed template could fail it.
                raise PreflightFailed(item.finding.describe(), findings=[item.finding])
            result = await transport.deliver(item) if isinstance(item, Envelope) else None
            summary.record(item, result)
            if on_result is not None:
                on_result(item, result)
    finally:
        await transport.close()
        summary.seconds = time.perf_counter() - started
    return summary
