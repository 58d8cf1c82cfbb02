"""campaign_tool: bulk e-mail campaigns that cannot expose one recipient to another.

The pipeline, one module per stage::

    config -> recipients -> render -> plan (privacy checks) -> transport -> audit

The public surface is small and re-exported here; the CLI (``campaign``) is a
thin wrapper over it.
"""

from campaign_tool.errors import (
    CampaignError,
    ConfigError,
    Halted,
    InputError,
    PreflightFailed,
    SourceChanged,
    TransportError,
)
from campaign_tool.findings import Finding, Severity
from campaign_tool.plan import Campaign, Envelope, load_campaign, preflight
from campaign_tool.unsubscribe import unsubscribe_token, verify_unsubscribe_token

__version__ = "0.1.0"

__all__ = [
    "Campaign",
    "CampaignError",
    "ConfigError",
    "Envelope",
    "Finding",
    "Halted",
    "InputError",
    "PreflightFailed",
    "Severity",
    "SourceChanged",
    "TransportError",
    "__version__",
    "load_campaign",
    "preflight",
    "unsubscribe_token",
    "verify_unsubscribe_token",
]
