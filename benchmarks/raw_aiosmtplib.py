"""The ceiling for this client library: pre-built messages over reused aiosmtplib connections.

No checks, no audit log, no rendering while sending: N connections, each sending
its share of already-built message bytes with ``sendmail``. Prints one JSON line
with the sending phase's duration.

    python benchmarks/raw_aiosmtplib.py --port 2525 --messages 10000 --concurrency 8 \
        --message-file benchmarks/work/sample.eml
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from pathlib import Path

import aiosmtplib


async def run(host: str, port: int, message: bytes, count: int, concurrency: int) -> float:
    """Send ``count`` copies (one recipient each) and return the seconds it took."""
    clients = [aiosmtplib.SMTP(hostname=host, port=port, start_tls=False,
                               local_hostname="bench.test", timeout=60)
               for _ in range(concurrency)]
    await asyncio.gather(*(client.connect() for client in clients))
    queue: asyncio.Queue[int] = asyncio.Queue()
    for number in range(count):
        queue.put_nowait(number)

    async def worker(client: aiosmtplib.SMTP) -> None:
        while not queue.empty():
            number = queue.get_nowait()
            await client.sendmail("news@example.test", [f"user{number}@example.test"], message)

    started = time.perf_counter()
    await asyncio.gather(*(worker(client) for client in clients))
    elapsed = time.perf_counter() - started
    for client in clients:
        await client.quit()
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--messages", type=int, required=True)
    parser.add_argument("--concurrency", type=int, required=True)
    parser.add_argument("--message-file", type=Path, required=True)
    args = parser.parse_args()
    message = args.message_file.read_bytes()
    seconds = asyncio.run(run(args.host, args.port, message, args.messages, args.concurrency))
    print(json.dumps({"messages": args.messages, "seconds": seconds}))


if __name__ == "__main__":
    main()
