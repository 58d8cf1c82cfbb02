"""Rate limits and the circuit breaker: fake clocks for the logic, a real server for the pace."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable

from click.testing import Result

from campaign_tool.send import Breaker, RateLimiter
from tests.conftest import MakeCampaign, default_rows, smtp_tables
from tests.smtp_server import SmtpServer

Cli = Callable[..., Result]


class FakeTime:
    """A clock that only moves when someone sleeps."""

    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def _acquire_times(limiter: RateLimiter, time: FakeTime, count: int) -> list[float]:
    async def run() -> list[float]:
        times = []
        for _ in range(count):
            await limiter.acquire()
            times.append(time.now)
        return times

    return asyncio.run(run())


def test_rate_limiter_spaces_events_evenly_instead_of_bursting() -> None:
    time = FakeTime()
    times = _acquire_times(RateLimiter(4.0, clock=time.clock, sleep=time.sleep), time, 9)
    gaps = [round(b - a, 6) for a, b in itertools.pairwise(times)]
    assert gaps == [0.25] * 8


def test_rate_limiter_does_not_save_up_idle_time_for_a_burst() -> None:
    time = FakeTime()
    limiter = RateLimiter(2.0, clock=time.clock, sleep=time.sleep)
    _acquire_times(limiter, time, 1)
    time.now += 60  # idle for a minute
    times = _acquire_times(limiter, time, 3)
    assert [round(b - a, 6) for a, b in itertools.pairwise(times)] == [0.5, 0.5]


def test_paused_limiter_holds_everyone_back() -> None:
    time = FakeTime()
    limiter = RateLimiter(None, clock=time.clock, sleep=time.sleep)
    limiter.pause(5.0)
    (when,) = _acquire_times(limiter, time, 1)
    assert when == 105.0


def test_unlimited_limiter_never_sleeps() -> None:
    time = FakeTime()
    _acquire_times(RateLimiter(None, clock=time.clock, sleep=time.sleep), time, 100)
    assert time.sleeps == []


def test_breaker_trips_at_the_threshold_over_the_window_only() -> None:
    breaker = Breaker(window=10, threshold=0.3, min_messages=10)
    outcomes = [False] * 20 + [True, False, True]
    assert all(breaker.record(o) is None for o in outcomes)
    reason = breaker.record(True)
    assert reason is not None and "3 of the last 10" in reason


def test_breaker_forgets_failures_that_left_the_window() -> None:
    breaker = Breaker(window=5, threshold=0.6, min_messages=5)
    for outcome in [True, True, False, False, False, False, False, True, True]:
        assert breaker.record(outcome) is None


def test_breaker_waits_for_enough_outcomes() -> None:
    breaker = Breaker(window=100, threshold=0.1, min_messages=10)
    assert [breaker.record(True) for _ in range(9)] == [None] * 9
    assert breaker.record(True) is not None


def test_global_rate_is_honoured_at_the_server(make_campaign: MakeCampaign, cli: Cli,
                                               smtp_server: SmtpServer) -> None:
    folder = make_campaign(rows=default_rows(25),
                           **smtp_tables(smtp_server, rate=20.0, concurrency=4))
    assert cli("send", folder.config, "--yes").exit_code == 0
    arrivals = sorted(m.at for m in smtp_server.handler.received)
    assert len(arrivals) == 25
    span = arrivals[-1] - arrivals[0]
    assert span >= 24 / 20 * 0.8  # generous: 25 messages at 20/s take about 1.2 s
    # Smooth, not bursty: no half-second holds more than its share plus slack.
    busiest = max(sum(1 for t in arrivals if start <= t < start + 0.5) for start in arrivals)
    assert busiest <= 10 + 3


def test_per_domain_rate_slows_one_domain_only(make_campaign: MakeCampaign, cli: Cli,
                                               smtp_server: SmtpServer) -> None:
    rows = default_rows(16)
    for row in rows[:8]:
        row["email"] = row["email"].replace("example.test", "slow.test")
    folder = make_campaign(rows=rows, **smtp_tables(smtp_server, domain_rate=10.0,
                                                    concurrency=4))
    assert cli("send", folder.config, "--yes").exit_code == 0
    slow = sorted(m.at for m in smtp_server.handler.received
                  if m.rcpt_tos[0].endswith("@slow.test"))
    assert len(slow) == 8
    assert slow[-1] - slow[0] >= 7 / 10 * 0.8
