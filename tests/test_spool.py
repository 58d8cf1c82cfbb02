"""The spool keeps checked messages on disk, returns them in order, and holds none in memory."""

from __future__ import annotations

import os
import tracemalloc
from pathlib import Path

from campaign_tool.plan import Envelope, Fate, Skipped
from campaign_tool.spool import Spool


def _envelope(row: int, size: int = 100) -> Envelope:
    return Envelope(row=row, line=row + 1, sender="news@sender.test",
                    recipient=f"user{row}@example.test", address_key=f"user{row}@example.test",
                    data=bytes([row % 256]) * size, message_id=f"<{row}@sender.test>",
                    smtputf8=False)


def test_spool_returns_every_item_in_order(tmp_path: Path) -> None:
    items = [_envelope(1), Skipped(2, 3, "user1@example.test", Fate.DUPLICATE, 1),
             _envelope(3), Skipped(4, 5, "x@example.test", Fate.SUPPRESSED)]
    with Spool(tmp_path) as spool:
        for item in items:
            spool.add(item)
        assert list(spool.items()) == items
        assert spool.messages == 2


def test_spool_file_is_unlinked_from_the_start(tmp_path: Path) -> None:
    with Spool(tmp_path) as spool:
        spool.add(_envelope(1))
        assert os.listdir(tmp_path) == []  # nothing on disk outlives the process


def test_reading_the_spool_holds_no_message_in_memory(tmp_path: Path) -> None:
    with Spool(tmp_path) as spool:
        for row in range(200):
            spool.add(_envelope(row, size=100_000))  # 20 MB in all
        tracemalloc.start()
        try:
            for _ in spool.items():
                pass
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert peak < 2_000_000, f"reading kept {peak:,} bytes alive"
