"""campaign_tool's speed and memory, side by side with mailmerge and raw aiosmtplib.

Run by hand (never in timed tests); results go in benchmarks/README.md with the
command. Everything talks to 127.0.0.1 only:

* Postfix's ``smtp-sink`` is the server (``apt-get install postfix``; only the
  standalone binary runs, never the Postfix daemon);
* ``latency_proxy.py`` adds a round trip time in front of it;
* the recipient lists are synthetic addresses under ``example.test``.

    python benchmarks/bench.py                 # the full run (about 15 minutes)
    python benchmarks/bench.py --quick         # small sizes: a smoke test of the harness

Every figure is the median (with min and max) of ``--runs`` runs taken in the
same session, so ratios compare like with like on a noisy shared machine.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import os
import platform
import re
import shutil
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
WORK = HERE / "work"
SMTP_SINK = shutil.which("smtp-sink") or "/usr/sbin/smtp-sink"
ENV = {**os.environ, "CAMPAIGN_UNSUBSCRIBE_KEY": "bench-unsubscribe-key-0123456789",
       "CAMPAIGN_AUDIT_KEY": "bench-audit-key-0123456789abcdef", "PYTHONHASHSEED": "0"}
CITIES = ["Lisbon", "Utrecht", "Tampere", "Graz", "Lyon", "Gdansk", "Bologna", "Aarhus"]
PLANS = ["Personal", "Team", "Business"]


# -- inputs ----------------------------------------------------------------

def recipients_file(rows: int) -> Path:
    """A CSV of ``rows`` synthetic recipients (made once, then reused)."""
    path = WORK / f"recipients-{rows}.csv"
    if path.exists():
        return path
    WORK.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["email", "name", "first_name", "plan", "account_id", "city"])
        for n in range(rows):
            writer.writerow([f"user{n}@example.test", f"Customer Number{n}", f"Customer{n}",
                             PLANS[n % 3], f"ACC-{10_000_000 + n}", CITIES[n % 8]])
    return path


def campaign_file(name: str, rows: int, transport: dict[str, Any],
                  concurrency: int = 8) -> Path:
    """A campaign.toml for the benchmark template and a list of ``rows``."""
    folder = WORK / name
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    transport_lines = "\n".join(f"{k} = {json.dumps(v)}" for k, v in transport.items())
    config = f"""
[campaign]
id = "bench"
subject = "{{{{ first_name }}}}, your weekly digest"

[sender]
address = "news@example.test"
name = "Example Co."

[templates]
html = "{HERE / 'templates' / 'digest.html.j2'}"
text = "{HERE / 'templates' / 'digest.txt.j2'}"

[recipients]
path = "{recipients_file(rows)}"
name_column = "name"
private_columns = ["account_id"]

[unsubscribe]
url = "https://example.test/unsubscribe?t={{{{ token }}}}"

[transport]
{transport_lines}

[send]
concurrency = {concurrency}
messages_per_connection = 1000000
"""
    path = folder / "campaign.toml"
    path.write_text(config, encoding="utf-8")
    return path


def mailmerge_folder(rows: int, port: int) -> Path:
    """mailmerge's own template, database and server config for the same messages."""
    folder = WORK / f"mailmerge-{rows}"
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    shutil.copy(recipients_file(rows), folder / "mailmerge_database.csv")
    html = (HERE / "templates" / "digest.html.j2").read_text(encoding="utf-8")
    text = (HERE / "templates" / "digest.txt.j2").read_text(encoding="utf-8")
    link = "https://example.test/unsubscribe?t=0123456789abcdef"
    template = ("TO: {{ name }} <{{ email }}>\nSUBJECT: {{ first_name }}, your weekly digest\n"
                "FROM: Example Co. <news@example.test>\nMIME-Version: 1.0\n"
                'Content-Type: multipart/alternative; boundary="mm-boundary"\n\n'
                "--mm-boundary\nContent-Type: text/plain; charset=utf-8\n\n"
                + text.replace("{{ unsubscribe_url }}", link)
                + "\n--mm-boundary\nContent-Type: text/html; charset=utf-8\n\n"
                + html.replace("{{ unsubscribe_url }}", link) + "\n--mm-boundary--\n")
    (folder / "mailmerge_template.txt").write_text(template, encoding="utf-8")
    (folder / "mailmerge_server.conf").write_text(
        f"[smtp_server]\nhost = 127.0.0.1\nport = {port}\n", encoding="utf-8")
    return folder


# -- processes -------------------------------------------------------------

@dataclass
class Measured:
    """One run of one command."""

    seconds: float
    peak_rss_mb: float
    stdout: str
    stderr: str
    returncode: int


def measure(command: Sequence[str], cwd: Path | None = None) -> Measured:
    """Run a command: wall time, output, and the peak RSS of that one process.

    The child is reaped with ``wait4`` so ``ru_maxrss`` is its own, not the
    largest of all children so far.
    """
    started = time.perf_counter()
    with open(os.devnull, "rb") as devnull:
        process = subprocess.Popen(command, cwd=cwd, env=ENV, stdin=devnull,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out_chunks: list[bytes] = []
    err_chunks: list[bytes] = []

    def drain(stream: Any, into: list[bytes]) -> None:
        for chunk in iter(lambda: stream.read(65536), b""):
            into.append(chunk)

    threads = [threading.Thread(target=drain, args=(process.stdout, out_chunks)),
               threading.Thread(target=drain, args=(process.stderr, err_chunks))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    return Measured(time.perf_counter() - started, usage.ru_maxrss / 1024,
                    b"".join(out_chunks).decode(), b"".join(err_chunks).decode(),
                    process.returncode)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextlib.contextmanager
def smtp_sink() -> Iterator[int]:
    """Postfix's smtp-sink on a free loopback port (as nobody when root)."""
    if not Path(SMTP_SINK).exists():
        sys.exit("smtp-sink not found: DEBIAN_FRONTEND=noninteractive apt-get install -y postfix")
    port = free_port()
    user = ["-u", "nobody"] if os.geteuid() == 0 else []
    process = subprocess.Popen([SMTP_SINK, *user, "-c", f"127.0.0.1:{port}", "1000"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_for_port(port)
        yield port
    finally:
        process.terminate()
        process.wait(timeout=10)


@contextlib.contextmanager
def latency(target: int, round_trip_ms: float) -> Iterator[int]:
    """The latency proxy in front of ``target``; yields the port to use."""
    if round_trip_ms <= 0:
        yield target
        return
    port = free_port()
    process = subprocess.Popen([sys.executable, str(HERE / "latency_proxy.py"),
                                "--listen", f"127.0.0.1:{port}",
                                "--target", f"127.0.0.1:{target}",
                                "--delay-ms", str(round_trip_ms / 2)],
                               stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        process.stdout.readline()
        yield port
    finally:
        process.terminate()
        process.wait(timeout=10)


def _wait_for_port(port: int) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
            return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port}")


# -- the measurements ------------------------------------------------------

@dataclass
class Series:
    """Several runs of one configuration."""

    label: str
    values: list[float] = field(default_factory=list)
    extra: dict[str, list[float]] = field(default_factory=dict)

    def add(self, value: float, **extra: float) -> None:
        self.values.append(value)
        for key, number in extra.items():
            self.extra.setdefault(key, []).append(number)

    @property
    def median(self) -> float:
        return statistics.median(self.values) if self.values else float("nan")

    def spread(self, fmt: str = "{:,.0f}") -> str:
        if not self.values:
            return "-"
        low, mid, high = min(self.values), self.median, max(self.values)
        return f"{fmt.format(mid)} ({fmt.format(low)}–{fmt.format(high)})"

    def extra_median(self, key: str) -> float:
        values = self.extra.get(key, [])
        return statistics.median(values) if values else float("nan")


_PREFLIGHT = re.compile(r"Preflight ok: ([\d,]+) rows, ([\d,]+) messages checked.*\(([\d.]+) s\)")
_DONE = re.compile(r"Done in ([\d.]+) s: ([\d,]+) delivered")


def preflight_series(sizes: Sequence[int], runs: int) -> list[Series]:
    """``campaign send --dry-run``: preflight rate and the process's peak RSS."""
    results = []
    for rows in sizes:
        config = campaign_file(f"preflight-{rows}", rows, {"type": "maildir", "path": "outbox"})
        recipients_file(rows)
        series = Series(f"{rows:,} rows")
        for _ in range(runs if rows < 1_000_000 else max(1, runs // 3)):
            run = measure([sys.executable, "-m", "campaign_tool", "send", str(config),
                               "--dry-run"])
            match = _PREFLIGHT.search(run.stderr)
            if run.returncode != 0 or not match:
                raise RuntimeError(f"preflight failed:\n{run.stderr[-2000:]}")
            messages, seconds = int(match.group(2).replace(",", "")), float(match.group(3))
            series.add(messages / seconds, rss=run.peak_rss_mb, wall=run.seconds)
        results.append(series)
        print(f"  preflight {rows:,}: {series.spread()} msg/s, "
              f"peak RSS {series.extra_median('rss'):.0f} MB", file=sys.stderr)
    return results


def ours(port: int, messages: int, concurrency: int, runs: int, label: str) -> Series:
    """``campaign send`` end to end (startup, preflight, audit log, sending)."""
    series = Series(label)
    for run_number in range(runs):
        config = campaign_file(f"send-{label}-{run_number}", messages,
                               {"type": "smtp", "host": "127.0.0.1", "port": port,
                                "security": "none", "timeout": 60,
                                "local_hostname": "bench.test"}, concurrency)
        run = measure([sys.executable, "-m", "campaign_tool", "send", str(config), "--yes"])
        done = _DONE.search(run.stdout)
        if run.returncode != 0 or not done:
            raise RuntimeError(f"campaign send failed:\n{run.stdout}\n{run.stderr[-2000:]}")
        delivered = int(done.group(2).replace(",", ""))
        series.add(delivered / run.seconds, send_phase=delivered / float(done.group(1)),
                   rss=run.peak_rss_mb)
    return series


def mailmerge(port: int, messages: int, runs: int, label: str) -> Series:
    """mailmerge 2.3.0 end to end (a new connection per message, sequential)."""
    series = Series(label)
    binary = shutil.which("mailmerge")
    if binary is None:
        return series
    for _ in range(runs):
        folder = mailmerge_folder(messages, port)
        run = measure([binary, "--no-limit", "--no-dry-run", "--output-format", "raw"],
                      cwd=folder)
        if run.returncode != 0:
            raise RuntimeError(f"mailmerge failed:\n{run.stderr[-2000:]}")
        series.add(messages / run.seconds)
    return series


def raw(port: int, messages: int, concurrency: int, runs: int, label: str) -> Series:
    """The raw aiosmtplib loop: sending phase only, pre-built bytes, no checks, no log."""
    series = Series(label)
    sample = WORK / "sample.eml"
    if not sample.exists():
        config = campaign_file("sample", 1_000, {"type": "maildir", "path": "outbox"})
        probe = measure([sys.executable, "-m", "campaign_tool", "preview", str(config),
                         "-n", "1", "--out", str(WORK / "sample")])
        if probe.returncode != 0:
            raise RuntimeError(probe.stderr)
        shutil.copy(next((WORK / "sample").glob("*.eml")), sample)
    for _ in range(runs):
        run = measure([sys.executable, str(HERE / "raw_aiosmtplib.py"), "--port", str(port),
                       "--messages", str(messages), "--concurrency", str(concurrency),
                       "--message-file", str(sample)])
        if run.returncode != 0:
            raise RuntimeError(run.stderr)
        result = json.loads(run.stdout)
        series.add(result["messages"] / result["seconds"])
    return series


@dataclass(frozen=True)
class SendCase:
    round_trip_ms: float
    concurrency: int
    messages: int
    mailmerge_messages: int


FULL_CASES = [SendCase(0, 1, 3_000, 2_000), SendCase(0, 8, 10_000, 2_000),
              SendCase(0, 32, 10_000, 2_000), SendCase(10, 1, 200, 200),
              SendCase(10, 8, 1_500, 200), SendCase(10, 32, 5_000, 200)]
QUICK_CASES = [SendCase(0, 8, 300, 100), SendCase(10, 32, 300, 30)]


def send_series(cases: Sequence[SendCase], runs: int) -> list[dict[str, Any]]:
    """For each case: ours, raw aiosmtplib and mailmerge, interleaved run by run."""
    rows = []
    with smtp_sink() as sink:
        for case in cases:
            with latency(sink, case.round_trip_ms) as port:
                label = f"{case.round_trip_ms:g}ms-c{case.concurrency}"
                ours_series, raw_series, mm_series = Series("ours"), Series("raw"), Series("mm")
                for _ in range(runs):  # interleaved, so drift hits all three alike
                    one = ours(port, case.messages, case.concurrency, 1, label)
                    ours_series.add(one.values[0], **{k: v[0] for k, v in one.extra.items()})
                    raw_series.values += raw(port, case.messages, case.concurrency, 1,
                                             label).values
                    if case.concurrency == max(c.concurrency for c in cases
                                               if c.round_trip_ms == case.round_trip_ms):
                        mm_series.values += mailmerge(port, case.mailmerge_messages, 1,
                                                      label).values
                rows.append({"case": case, "ours": ours_series, "raw": raw_series,
                             "mailmerge": mm_series})
                print(f"  send {label}: ours {ours_series.spread()} msg/s end to end, "
                      f"raw {raw_series.spread()}, mailmerge {mm_series.spread()}",
                      file=sys.stderr)
    return rows


def big_send_rss(messages: int) -> Measured:
    """Peak RSS of one ``campaign send`` of ``messages`` to smtp-sink."""
    with smtp_sink() as port:
        config = campaign_file(f"rss-{messages}", messages,
                               {"type": "smtp", "host": "127.0.0.1", "port": port,
                                "security": "none", "local_hostname": "bench.test"}, 8)
        run = measure([sys.executable, "-m", "campaign_tool", "send", str(config), "--yes"])
        if run.returncode != 0:
            raise RuntimeError(run.stderr[-2000:])
        return run


# -- the report ------------------------------------------------------------

def machine() -> str:
    memory = "?"
    with contextlib.suppress(OSError), open("/proc/meminfo", encoding="ascii") as handle:
        memory = f"{int(handle.readline().split()[1]) / 1024 / 1024:.0f} GiB"
    return (f"{os.cpu_count()} cores, {memory}, {platform.python_implementation()} "
            f"{platform.python_version()}, {platform.system()} {platform.release()}")


def report(preflights: list[Series], sends: list[dict[str, Any]],
           rss: Measured | None, rss_messages: int) -> str:
    lines = [f"Machine: {machine()}", ""]
    lines += ["Preflight (render + plan + leak check + message bytes), one process:", "",
              "| rows | messages/s: median (min–max) | peak RSS |", "|---|---|---|"]
    for series in preflights:
        lines.append(f"| {series.label} | {series.spread()} | "
                     f"{series.extra_median('rss'):.0f} MB |")
    lines += ["", "Sending to smtp-sink (messages/s; median (min–max)). *ours* is "
              "`campaign send` end to end (startup, preflight of every message, audit log, "
              "sending); *send phase* is its sending phase alone; *raw* is the aiosmtplib "
              "loop's sending phase with pre-built bytes; mailmerge is end to end.", "",
              "| RTT | conns | messages | ours | ours: send phase | raw aiosmtplib | mailmerge "
              "| ours / mailmerge | send phase / raw |",
              "|---|---|---|---|---|---|---|---|---|"]
    mailmerge_by_rtt: dict[float, float] = {}
    for row in sends:
        if row["mailmerge"].values:
            mailmerge_by_rtt[row["case"].round_trip_ms] = row["mailmerge"].median
    for row in sends:
        case, ours_s, raw_s, mm_s = row["case"], row["ours"], row["raw"], row["mailmerge"]
        mm = mailmerge_by_rtt.get(case.round_trip_ms, float("nan"))
        phase = Series("phase", ours_s.extra.get("send_phase", []))
        lines.append(
            f"| {case.round_trip_ms:g} ms | {case.concurrency} | {case.messages:,} | "
            f"{ours_s.spread()} | {phase.spread()} | {raw_s.spread()} | "
            f"{mm_s.spread() if mm_s.values else '(see above)'} | "
            f"{ours_s.median / mm:.1f}× | {phase.median / raw_s.median:.0%} |")
    if rss is not None:
        lines += ["", f"Peak RSS of `campaign send` of {rss_messages:,} messages "
                      f"(concurrency 8, 0 ms): {rss.peak_rss_mb:.0f} MB "
                      f"in {rss.seconds:.0f} s"]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke test")
    parser.add_argument("--runs", type=int, default=3, help="runs per figure (default 3)")
    parser.add_argument("--only", choices=["preflight", "send", "rss"], action="append",
                        help="run only some parts (repeatable)")
    args = parser.parse_args()
    parts = set(args.only or ["preflight", "send", "rss"])
    runs = 1 if args.quick else args.runs
    sizes = [1_000] if args.quick else [10_000, 100_000, 1_000_000]
    cases = QUICK_CASES if args.quick else FULL_CASES
    rss_messages = 1_000 if args.quick else 100_000
    print(f"campaign_tool benchmark ({'quick' if args.quick else 'full'}), "
          f"{runs} run(s) each", file=sys.stderr)
    preflights = preflight_series(sizes, runs) if "preflight" in parts else []
    sends = send_series(cases, runs) if "send" in parts else []
    rss = big_send_rss(rss_messages) if "rss" in parts else None
    text = report(preflights, sends, rss, rss_messages)
    print(text)
    WORK.mkdir(exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%S")
    (WORK / f"results-{stamp}.md").write_text(text + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
