"""The SMTP session on its own: what a broken or cancelled transaction does to a connection."""

from __future__ import annotations

import asyncio
import contextlib

from campaign_tool.addresses import parse_address
from campaign_tool.config import SmtpTransport as SmtpSettings
from campaign_tool.plan import Envelope
from campaign_tool.transports import DeliveryState, Stage
from campaign_tool.transports.smtp import SmtpTransport
from tests.smtp_server import SmtpServer


def _transport(server: SmtpServer, timeout: float = 2.0) -> SmtpTransport:
    settings = SmtpSettings(type="smtp", host=server.host, port=server.port, security="none",
                            timeout=timeout, local_hostname="client.test")
    return SmtpTransport(settings, password=None, messages_per_connection=100)


def _envelope(address: str) -> Envelope:
    mailbox = parse_address(address)
    data = (f"From: news@sender.test\r\nTo: {address}\r\nSubject: hi\r\n\r\nbody\r\n").encode()
    return Envelope(row=1, line=2, sender="news@sender.test", recipient=mailbox.address,
                    address_key=mailbox.key, data=data, message_id="<x@sender.test>",
                    smtputf8=False)


async def _nothing() -> None:
    return None


def test_cancelled_transaction_closes_the_connection_and_the_next_opens_a_new_one(
        smtp_server: SmtpServer) -> None:
    smtp_server.handler.script("slow@example.test", "data:slow")
    smtp_server.handler.slow_seconds = 1.0

    async def scenario() -> None:
        session = _transport(smtp_server).session()
        attempt = asyncio.create_task(session.attempt(_envelope("slow@example.test"), _nothing))
        await asyncio.sleep(0.3)  # the data is out, the reply not yet in
        attempt.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await attempt
        result = await session.attempt(_envelope("next@example.test"), _nothing)
        assert result.state is DeliveryState.DELIVERED
        await session.close()

    asyncio.run(scenario())
    assert smtp_server.handler.connections == 2  # the cancelled one was not reused


def test_refused_recipient_leaves_the_connection_usable(smtp_server: SmtpServer) -> None:
    smtp_server.handler.script("gone@example.test", "rcpt:550")

    async def scenario() -> list[DeliveryState]:
        session = _transport(smtp_server).session()
        first = await session.attempt(_envelope("gone@example.test"), _nothing)
        assert first.stage is Stage.RCPT and first.code == 550 and first.permanent
        second = await session.attempt(_envelope("here@example.test"), _nothing)
        await session.close()
        return [first.state, second.state]

    assert asyncio.run(scenario()) == [DeliveryState.FAILED, DeliveryState.DELIVERED]
    assert smtp_server.handler.connections == 1


def test_before_data_runs_after_rcpt_and_before_the_message(smtp_server: SmtpServer) -> None:
    seen: list[int] = []

    async def before() -> None:
        seen.append(len(smtp_server.handler.received))

    async def scenario() -> None:
        session = _transport(smtp_server).session()
        await session.attempt(_envelope("a@example.test"), before)
        await session.close()

    asyncio.run(scenario())
    assert seen == [0] and len(smtp_server.handler.received) == 1
