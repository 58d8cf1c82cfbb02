"""The preview gallery in a real browser: every message shown, nothing loaded from outside.

Headless Chromium (Debian's ``chromium`` and ``chromium-driver``) is driven over
the W3C WebDriver protocol with plain HTTP. Every host name resolves to a local
trap server that records connection attempts, so "loads nothing from outside
127.0.0.1" is observed, not assumed; a control page without the gallery's
policy proves the trap would see such a load. ``.ci/run`` installs Chromium and
sets CAMPAIGN_REQUIRE_BROWSER=1, so in CI a missing browser fails the test.
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import json
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import Result

from tests.conftest import MakeCampaign

pytestmark = pytest.mark.slow
Cli = Callable[..., Result]
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
# Host names only this test uses: Chromium's own background requests (to
# Google's hosts, despite --disable-background-networking) are told apart by name.
REMOTE_HOSTS = ("tracker.preview-test-remote.com", "fonts.preview-test-remote.com",
                "cdn.preview-test-remote.com", "img.preview-test-remote.com")
REMOTE_HTML = """<html><body><p>Hello {{ first_name }}</p>
<img src="https://tracker.preview-test-remote.com/open.gif?u={{ first_name }}" alt="pixel">
<img src="http://img.preview-test-remote.com/logo.png" alt="logo">
<link rel="stylesheet" href="https://fonts.preview-test-remote.com/x.css">
<div style="background: url('https://cdn.preview-test-remote.com/bg.png')">Plan: {{ plan }}</div>
<p><a href="{{ unsubscribe_url }}">Unsubscribe</a></p></body></html>
"""


def _require_browser() -> None:
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not Path(p).exists()]
    if missing:
        message = ("headless browser test needs Debian's chromium and chromium-driver: "
                   f"missing {', '.join(missing)}")
        if os.environ.get("CAMPAIGN_REQUIRE_BROWSER"):
            pytest.fail(message)
        pytest.skip(message)


class Trap:
    """A listener on 127.0.0.1 that keeps the first bytes of every connection.

    Those bytes name the host the browser wanted: the ``Host`` header of plain
    HTTP, or the server name (SNI) of a TLS ClientHello, both in clear.
    """

    def __init__(self) -> None:
        self.socket = socket.create_server(("127.0.0.1", 0))
        self.port = self.socket.getsockname()[1]
        self.openings: list[bytes] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self.socket.accept()
            except OSError:
                return
            threading.Thread(target=self._read, args=(connection,), daemon=True).start()

    def _read(self, connection: socket.socket) -> None:
        connection.settimeout(2)
        data = b""
        with contextlib.suppress(OSError):
            while len(data) < 4096 and (chunk := connection.recv(4096)):
                data += chunk
                if b"\r\n\r\n" in data or len(data) > 512:
                    break
        connection.close()
        self.openings.append(data)

    def contacted(self, hosts: tuple[str, ...]) -> list[str]:
        """The given hosts that some connection asked for."""
        return [host for host in hosts if any(host.encode() in data for data in self.openings)]

    def close(self) -> None:
        self.socket.close()


@contextlib.contextmanager
def serve(folder: Path) -> Iterator[int]:
    """Serve ``folder`` over HTTP on 127.0.0.1; yields the port."""
    handler = functools.partial(_QuietHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


class Browser:
    """Just enough of WebDriver to load a page and read it."""

    def __init__(self, trap_port: int) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.profile = tempfile.mkdtemp(prefix="chromium-")
        self.driver = subprocess.Popen([CHROMEDRIVER, f"--port={self.port}"],
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self._wait_for_driver()
        args = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--no-first-run", "--disable-component-update", "--disable-sync",
                "--disable-quic", f"--user-data-dir={self.profile}",
                f"--host-resolver-rules=MAP * 127.0.0.1:{trap_port}, EXCLUDE 127.0.0.1"]
        session = self._call("POST", "/session", {"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": CHROMIUM, "args": args}}}})
        self.session = session["sessionId"]

    def _wait_for_driver(self) -> None:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError):
                urllib.request.urlopen(f"http://127.0.0.1:{self.port}/status", timeout=1)
                return
            time.sleep(0.1)
        raise RuntimeError("chromedriver did not start")

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}", data=data,
                                         method=method,
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=60) as response:
            payload = json.load(response)
        return payload.get("value", payload)

    def get(self, url: str) -> None:
        self._call("POST", f"/session/{self.session}/url", {"url": url})

    def script(self, source: str, *args: Any) -> Any:
        return self._call("POST", f"/session/{self.session}/execute/sync",
                          {"script": source, "args": list(args)})

    def frames(self) -> list[Any]:
        return self._call("POST", f"/session/{self.session}/elements",
                          {"using": "css selector", "value": "iframe.html"})

    def enter(self, frame: Any) -> None:
        self._call("POST", f"/session/{self.session}/frame", {"id": frame})

    def leave(self) -> None:
        self._call("POST", f"/session/{self.session}/frame/parent", {})

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._call("DELETE", f"/session/{self.session}")
        self.driver.terminate()
        self.driver.wait(timeout=10)
        shutil.rmtree(self.profile, ignore_errors=True)


@pytest.fixture
def trap() -> Iterator[Trap]:
    """Where every remote load the browser attempts ends up."""
    catcher = Trap()
    yield catcher
    catcher.close()


@pytest.fixture
def browser(trap: Trap) -> Iterator[Browser]:
    """Headless Chromium whose every host name resolves to the trap."""
    _require_browser()
    driver = Browser(trap.port)
    yield driver
    driver.close()


def test_gallery_shows_every_message_and_loads_nothing_remote(
        make_campaign: MakeCampaign, cli: Cli, tmp_path: Path, browser: Browser,
        trap: Trap) -> None:
    out = tmp_path / "preview"
    folder = make_campaign(html=REMOTE_HTML)
    assert cli("preview", folder.config, "-n", "3", "--out", out).exit_code == 0
    with serve(out) as port:
        browser.get(f"http://127.0.0.1:{port}/index.html")
        time.sleep(1.0)  # let any (blocked) loads be attempted
        cards = browser.script("""
            return [...document.querySelectorAll('section.card')].map(card => ({
              title: card.querySelector('h2').innerText,
              headers: Object.fromEntries([...card.querySelectorAll('table.headers tr')]
                .map(tr => [tr.cells[0].innerText, tr.cells[1].innerText])),
              blocked: (card.querySelector('.blocked') || {}).innerText || ''}));""")
        bodies = []
        for frame in browser.frames():
            browser.enter(frame)
            bodies.append(browser.script("""return {text: document.body.innerText,
                images: [...document.images].map(i => i.src.slice(0, 10))};"""))
            browser.leave()
    assert len(cards) == 3
    for number, card in enumerate(cards, start=1):
        headers = card["headers"]
        assert headers["To"] == f"User {number} <user{number}@example.test>"
        assert headers["Subject"] == f"News for User{number}"
        for name in ("From", "Date", "Message-ID", "List-Unsubscribe"):
            assert headers[name], name
        assert "remote reference(s) blocked" in card["blocked"]
    assert [body["text"].splitlines()[0] for body in bodies] == [
        f"Hello User{n}" for n in (1, 2, 3)]
    assert all(images == ["data:image", "data:image"] for images in (b["images"] for b in bodies))
    assert trap.contacted(REMOTE_HOSTS) == [], "the gallery loaded something from outside"


def test_the_trap_sees_remote_loads_when_nothing_blocks_them(
        tmp_path: Path, browser: Browser, trap: Trap) -> None:
    """Control: the same remote image on a page without the gallery's policy."""
    (tmp_path / "open.html").write_text(
        '<img src="http://tracker.preview-test-remote.com/open.gif">'
        '<img src="https://cdn.preview-test-remote.com/bg.png">', encoding="utf-8")
    with serve(tmp_path) as port:
        browser.get(f"http://127.0.0.1:{port}/open.html")
        deadline = time.monotonic() + 5
        while len(trap.contacted(REMOTE_HOSTS)) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
    assert trap.contacted(REMOTE_HOSTS) == ["tracker.preview-test-remote.com",
                                            "cdn.preview-test-remote.com"]
