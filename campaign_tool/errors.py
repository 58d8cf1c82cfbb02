"""The one exception hierarchy of campaign_tool, and the exit codes it maps to.

The library raises these; the CLI turns each into a clear message and the exit
code that PRODUCT.md promises. Nothing else should reach the user as a traceback.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from campaign_tool.findings import Finding

EXIT_OK = 0
"""Every recipient reached a good final state / lint found nothing."""
EXIT_FAILURES = 1
"""The run finished but some recipients failed / lint found problems."""
EXIT_USAGE = 2
"""Usage, configuration or input error: nothing was sent."""
EXIT_HALTED = 3
"""Stopped on purpose: circuit breaker, interruption, canary awaiting go-ahead."""


class CampaignError(Exception):
    """Base of every error campaign_tool raises on purpose."""

    exit_code: int = EXIT_USAGE

    def __init__(self, message: str, *, findings: Sequence[Finding] = ()) -> None:
        super().__init__(message)
        self.message = message
        self.findings: tuple[Finding, ...] = tuple(findings)


class ConfigError(CampaignError):
    """The campaign file, a template or a key cannot be used as given (exit 2)."""


class InputError(CampaignError):
    """A recipient or suppression list cannot be read at all (exit 2)."""


class PreflightFailed(CampaignError):
    """At least one message failed its checks, so nothing may be sent (exit 2).

    ``findings`` holds every problem found (up to the report's cap).
    """


class SourceChanged(CampaignError):
    """The recipient list changed between the preflight and the send (exit 2)."""


class TransportError(CampaignError):
    """The transport cannot be used at all, e.g. the server refuses to talk (exit 2)."""


class Halted(CampaignError):
    """Sending stopped on purpose before the end (exit 3): breaker, signal, canary."""

    exit_code = EXIT_HALTED


class AuditLogError(CampaignError):
    """The audit log is unreadable, tampered with, or belongs to another campaign."""
