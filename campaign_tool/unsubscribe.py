"""Per-recipient unsubscribe tokens (keyed HMAC), and their verification.

The token proves that a request to unsubscribe ``address`` from ``campaign_id``
came from a link this campaign sent, without putting anything secret or
reversible in the URL. A web application that handles the unsubscribe link
holds the same key and calls :func:`verify_unsubscribe_token`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac


def unsubscribe_token(key: bytes, campaign_id: str, address_key: str) -> str:
    """The URL-safe token (22 characters) for one recipient of one campaign.

    ``address_key`` is the lower-cased address as campaign_tool keys it.
    """
    message = f"unsubscribe\x00{campaign_id}\x00{address_key.lower()}".encode()
    digest = hmac.new(key, message, hashlib.sha256).digest()[:16]
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def verify_unsubscribe_token(key: bytes, campaign_id: str, address: str, token: str) -> bool:
    """True when ``token`` was issued for ``address`` in ``campaign_id`` with ``key``."""
    expected = unsubscribe_token(key, campaign_id, address)
    return hmac.compare_digest(expected, token)
