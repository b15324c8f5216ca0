"""The smoke study's report, opened in headless Chromium and checked from inside the page.

Chromium is driven over its DevTools protocol on a pipe (``--remote-debugging-pipe``:
JSON messages separated by NUL bytes on file descriptors 3 and 4), so no
Python package and no network port are needed. The page is loaded from disk;
the checks run in it with ``Runtime.evaluate``; console messages, uncaught
exceptions and failed loads are collected from the protocol's events.
"""

from __future__ import annotations

import base64
import json
import os
import select
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "chromium", "chromium-browser", "google-chrome")


def find_chromium() -> str | None:
    for name in CHROMIUM_CANDIDATES:
        path = shutil.which(name)
        if path:
            return path
    return None


class Chromium:
    """A headless Chromium spoken to over the DevTools protocol on a pipe."""

    def __init__(self, executable: str, profile: Path, timeout: float = 30.0):
        self.timeout = timeout
        self.events: list[dict[str, Any]] = []
        self._buf = b""
        self._id = 0
        to_chrome_r, self._to_chrome = os.pipe()
        self._from_chrome, from_chrome_w = os.pipe()

        def fds() -> None:  # chromium reads commands on fd 3 and writes replies on fd 4
            high_r, high_w = os.dup(to_chrome_r), os.dup(from_chrome_w)
            os.dup2(high_r, 3)
            os.dup2(high_w, 4)

        self.proc = subprocess.Popen(
            [executable, "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--no-first-run", "--no-default-browser-check",
             "--disable-extensions", f"--user-data-dir={profile}", "--remote-debugging-pipe",
             "--window-size=1280,1000", "about:blank"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            preexec_fn=fds, pass_fds=(3, 4),  # both exist here: the pipes took the lowest free fds
        )
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        self.session: str | None = None

    def _read(self) -> dict[str, Any]:
        deadline = time.monotonic() + self.timeout
        while b"\0" not in self._buf:
            left = deadline - time.monotonic()
            ready, _, _ = select.select([self._from_chrome], [], [], max(left, 0))
            if not ready:
                raise TimeoutError("chromium did not answer")
            chunk = os.read(self._from_chrome, 1 << 20)
            if not chunk:
                raise EOFError("chromium closed the pipe")
            self._buf += chunk
        message, self._buf = self._buf.split(b"\0", 1)
        return json.loads(message)

    def send(self, method: str, params: dict[str, Any] | None = None, page: bool = True) -> dict[str, Any]:
        self._id += 1
        message: dict[str, Any] = {"id": self._id, "method": method, "params": params or {}}
        if page and self.session:
            message["sessionId"] = self.session
        os.write(self._to_chrome, json.dumps(message).encode() + b"\0")
        while True:
            reply = self._read()
            if reply.get("id") == self._id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_for(self, method: str) -> dict[str, Any]:
        for event in self.events:
            if event.get("method") == method:
                return event
        while True:
            event = self._read()
            self.events.append(event)
            if event.get("method") == method:
                return event

    def open(self, url: str) -> None:
        target = self.send("Target.createTarget", {"url": "about:blank"}, page=False)["targetId"]
        self.session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True},
                                 page=False)["sessionId"]
        for domain in ("Page", "Runtime", "Log"):
            self.send(f"{domain}.enable")
        self.send("Page.navigate", {"url": url})
        self.wait_for("Page.loadEventFired")

    def evaluate(self, expression: str) -> Any:
        result = self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True,
                                                "awaitPromise": True})
        if "exceptionDetails" in result:
            raise RuntimeError(f"page script failed: {result['exceptionDetails']}")
        return result["result"].get("value")

    def screenshot(self, path: Path) -> Path:
        data = self.send("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True})["data"]
        path.write_bytes(base64.b64decode(data))
        return path

    def errors(self) -> list[str]:
        """Console errors, uncaught exceptions and failed loads seen so far."""
        found = []
        for event in self.events:
            method, params = event.get("method"), event.get("params", {})
            if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
                found.append("console: " + " ".join(str(a.get("value")) for a in params.get("args", [])))
            elif method == "Runtime.exceptionThrown":
                found.append("exception: " + json.dumps(params.get("exceptionDetails", {}))[:300])
            elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
                entry = params["entry"]
                found.append(f"log: {entry.get('text')} {entry.get('url', '')}")
        return found

    def close(self) -> None:
        try:
            self.send("Browser.close", page=False)
        except (OSError, EOFError, TimeoutError, RuntimeError):
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self._to_chrome)
        os.close(self._from_chrome)


PAGE_CHECK = """
(async () => {
  const images = Array.from(document.images);
  await Promise.all(images.map(img => img.decode().catch(() => null)));
  return {
    images: images.map(img => ({alt: img.alt, complete: img.complete, naturalWidth: img.naturalWidth})),
    fitRows: Array.from(document.querySelectorAll('#fits tbody tr')).map(tr => tr.dataset.law),
    missingFigures: document.querySelectorAll('#missing-figures tbody tr').length,
    runRows: document.querySelectorAll('#runs-table tbody tr').length,
    external: Array.from(document.querySelectorAll('[src],link[href],script[src]'))
      .map(e => e.getAttribute('src') || e.getAttribute('href'))
      .filter(u => /^(https?:)?\\/\\//.test(u)),
    title: document.title,
  };
})()
"""


@pytest.fixture(scope="module")
def chromium_path() -> str:
    path = find_chromium()
    if path is None:
        pytest.skip("Chromium not installed (Debian package 'chromium'; scripts/install-system-packages.sh)")
    return path


def test_smoke_report_in_chromium(smoke_report, chromium_path, tmp_path):
    report = smoke_report
    browser = Chromium(chromium_path, tmp_path / "profile")
    try:
        browser.open(report.index.resolve().as_uri())
        page = browser.evaluate(PAGE_CHECK)
        shot = browser.screenshot(tmp_path / "report.png")
        errors = browser.errors()
    finally:
        browser.close()
    print(f"screenshot: {shot}")
    assert shot.stat().st_size > 10_000
    assert page["images"], "the report shows no figure"
    assert len(page["images"]) == len(report.drawn)
    not_loaded = [img["alt"] for img in page["images"] if not (img["complete"] and img["naturalWidth"] > 0)]
    assert not not_loaded, f"images that did not load: {not_loaded}"
    assert errors == [], errors
    assert sorted(page["fitRows"]) == sorted(report.fits.laws.laws), "one fit-table row per fitted law"
    assert page["missingFigures"] == len(report.not_drawn)
    assert page["runRows"] >= len(report.fits.points.get("kaplan_n", []))
    assert page["external"] == [], "the page must not load anything from the network"


@pytest.fixture(scope="module")
def smoke_report(smoke_store, tmp_path_factory):
    from lmscale.report import ReportOptions, build_report

    out = tmp_path_factory.mktemp("smoke-report")
    return build_report(smoke_store, out, ReportOptions(bootstrap=20, strict=True))
