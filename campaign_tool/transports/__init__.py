"""Transports: where envelopes go. One interface, ``deliver(envelope)``.

A transport receives only :class:`~campaign_tool.plan.Envelope` objects, each
with one recipient, and answers with a :class:`DeliveryResult`. A partial or
failed delivery is data, not an exception: exceptions are for a transport that
cannot work at all.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Protocol

from campaign_tool.plan import Envelope


class DeliveryState(enum.StrEnum):
    """The outcome of one delivery attempt sequence."""

    DELIVERED = "delivered"
    FAILED = "failed"          # permanent (5xx) or retries exhausted
    UNKNOWN = "unknown"        # the message may or may not have been accepted


@dataclass(frozen=True, slots=True)
class DeliveryResult:
    """What happened to one envelope, with the server's words when there are any."""

    state: DeliveryState
    code: int | None = None
    text: str | None = None
    attempts: int = 1
    permanent: bool = False


class Transport(Protocol):
    """The interface every transport implements."""

    description: str
    """A human description: where messages go (shown before sending)."""
    real: bool
    """True when messages leave this machine (a send needs confirmation)."""

    async def open(self) -> None:
        """Prepare to deliver (create folders, check the server)."""
        ...

    async def deliver(self, envelope: Envelope) -> DeliveryResult:
        """Deliver one envelope and say what happened."""
        ...

    async def close(self) -> None:
        """Release everything; make deliveries durable."""
        ...
