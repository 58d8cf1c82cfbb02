"""Transports: where envelopes go. One interface: a session makes delivery attempts.

A transport receives only :class:`~campaign_tool.plan.Envelope` objects, each
with one recipient. A session (one per worker; for SMTP, one reused connection)
makes one *attempt* at a time and answers with a :class:`DeliveryResult`:
partial or failed delivery is data, not an exception. Retries, rate limits and
the audit log belong to the sender (``send.py``), the same for every transport.

Every attempt calls ``before_data()`` right before the message content goes
out, so the sender can record the recipient as ``sending`` durably first.
"""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from campaign_tool.plan import Envelope

BeforeData = Callable[[], Awaitable[None]]


class DeliveryState(enum.StrEnum):
    """The outcome of one delivery attempt."""

    DELIVERED = "delivered"
    FAILED = "failed"      # not delivered: see ``transient``
    UNKNOWN = "unknown"    # the message may or may not have been accepted


class Stage(enum.StrEnum):
    """Where in the transaction an attempt ended."""

    CONNECT = "connect"
    MAIL = "mail"
    RCPT = "rcpt"
    DATA = "data"
    DONE = "done"


@dataclass(frozen=True, slots=True)
class DeliveryResult:
    """What one attempt did, with the server's words when there are any.

    ``transient`` failures may be retried (4xx, disconnects and timeouts before
    the message data); ``fatal`` ones mean the transport itself is unusable
    (authentication refused, TLS impossible) and the run must stop.
    """

    state: DeliveryState
    stage: Stage = Stage.DONE
    code: int | None = None
    text: str | None = None
    transient: bool = False
    fatal: bool = False

    @property
    def permanent(self) -> bool:
        """A definite refusal that retrying will not change (5xx)."""
        return self.state is DeliveryState.FAILED and not self.transient


class Session(Protocol):
    """One worker's channel to the transport (for SMTP: one reused connection)."""

    async def attempt(self, envelope: Envelope, before_data: BeforeData) -> DeliveryResult:
        """Try once to deliver ``envelope``; call ``before_data`` before its content."""
        ...

    async def close(self) -> None:
        """End the session politely (QUIT) where possible."""
        ...


class Transport(Protocol):
    """The interface every transport implements."""

    description: str
    """A human description: where messages go (shown before sending)."""
    real: bool
    """True when messages leave this machine (a send needs confirmation)."""

    async def open(self) -> None:
        """Check the transport can be used at all; raise TransportError if not."""
        ...

    def session(self) -> Session:
        """A new session for one worker."""
        ...

    async def close(self) -> None:
        """Release everything; make deliveries durable."""
        ...
