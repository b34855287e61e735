"""The page of `scrd serve` in a real browser: headless Chromium (Debian's `chromium`, which .ci/run
installs when missing) chooses an image in the page's file input, and the page must show the heat-map
panel, the score and the decision, with no console message and no script error.

How the browser is driven: Chromium's own DevTools protocol over ``--remote-debugging-pipe`` (JSON
messages ended by a NUL byte, on file descriptors 3 and 4 of the browser). No WebDriver, no websocket
library, nothing downloaded: ``DOM.setFileInputFiles`` gives the ``<input type=file>`` a file as a
person choosing it does (the page gets its ``change`` event), ``Runtime.evaluate`` reads the page
back, and the ``Runtime``/``Log`` events are the console. (``--dump-dom``, which the report's browser
test uses, loads a page but cannot interact with it.)
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("fastapi", reason="scrd serve needs pip install 'scrd[serve]'")
pytest.importorskip("uvicorn", reason="scrd serve needs pip install 'scrd[serve]'")
pytest.importorskip("multipart", reason="scrd serve needs pip install 'scrd[serve]'")

from serving import post_files, running  # noqa: E402

from scrd.serve.app import create_app  # noqa: E402
from scrd.serve.run import build_service  # noqa: E402
from scrd.serve.service import ServeSettings  # noqa: E402

CHROMIUM = next((p for p in map(shutil.which, ("chromium", "chromium-browser")) if p), None)
BASH = shutil.which("bash")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None or BASH is None,
    reason="no chromium on PATH (.ci/run installs Debian's chromium package when it is missing)",
)
CONSOLE_EVENTS = ("Runtime.consoleAPICalled", "Runtime.exceptionThrown", "Log.entryAdded")


class DevTools:
    """A headless Chromium driven over its DevTools pipe."""

    def __init__(self, profile: Path) -> None:
        to_browser, self._write = os.pipe()
        self._read, from_browser = os.pipe()
        flags = ["--headless", "--no-sandbox", "--disable-gpu", f"--user-data-dir={profile}", "--no-first-run"]
        # bash puts the two pipe ends on the descriptors 3 and 4 that Chromium reads and writes
        script = f'exec "$0" "$@" 3<&{to_browser} 4>&{from_browser} {to_browser}<&- {from_browser}>&-'
        self.proc = subprocess.Popen(
            [BASH, "-c", script, CHROMIUM, *flags, "--remote-debugging-pipe", "about:blank"],
            pass_fds=(to_browser, from_browser),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        os.close(to_browser)
        os.close(from_browser)
        self._messages: queue.Queue = queue.Queue()
        self.events: list[dict[str, Any]] = []
        self._next = 0
        threading.Thread(target=self._reader, daemon=True).start()

    def _reader(self) -> None:
        buffer = b""
        while chunk := os.read(self._read, 1 << 16):
            buffer += chunk
            *messages, buffer = buffer.split(b"\0")
            for message in messages:
                self._messages.put(json.loads(message))
        self._messages.put(None)

    def send(self, method: str, params: dict | None = None, session: str | None = None, timeout: float = 60) -> dict:
        self._next += 1
        message = {"id": self._next, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self._write, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            reply = self._messages.get(timeout=max(0.1, deadline - time.monotonic()))
            assert reply is not None, "the browser closed its pipe"
            if reply.get("id") == self._next:
                assert "error" not in reply, (method, reply["error"])
                return reply.get("result", {})
            if "method" in reply:
                self.events.append(reply)

    def evaluate(self, session: str, expression: str) -> Any:
        result = self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True}, session)
        return result["result"].get("value")

    def wait_for(self, session: str, expression: str, values: tuple, timeout: float = 60) -> Any:
        deadline = time.monotonic() + timeout
        while (value := self.evaluate(session, expression)) not in values:
            assert time.monotonic() < deadline, f"{expression} stayed {value!r}"
            time.sleep(0.1)
        return value

    def console(self) -> list[dict]:
        return [e for e in self.events if e["method"] in CONSOLE_EVENTS]

    def close(self) -> None:
        try:
            self.send("Browser.close", timeout=10)
        except (AssertionError, queue.Empty, OSError):
            pass
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self._write)


@pytest.fixture
def browser(tmp_path):
    devtools = DevTools(tmp_path / "profile")
    yield devtools
    devtools.close()


@pytest.fixture(scope="module")
def page_url(tiny_run):
    service = build_service(tiny_run, "cpu", "fp32", ServeSettings(max_batch=4, max_wait_ms=5))
    with running(create_app(service)) as url:
        yield url


def _open(browser: DevTools, url: str) -> str:
    target = browser.send("Target.createTarget", {"url": "about:blank"})["targetId"]
    session = browser.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
    for domain in ("Runtime", "Log", "Page", "DOM"):
        browser.send(f"{domain}.enable", session=session)
    browser.send("Page.navigate", {"url": url + "/"}, session)
    browser.wait_for(session, "document.body && document.body.getAttribute('data-state')", ("ready",))
    return session


def _choose(browser: DevTools, session: str, path: Path) -> str:
    root = browser.send("DOM.getDocument", {}, session)["root"]["nodeId"]
    node = browser.send("DOM.querySelector", {"nodeId": root, "selector": "#file"}, session)["nodeId"]
    browser.send("DOM.setFileInputFiles", {"files": [str(path)], "nodeId": node}, session)
    return browser.wait_for(session, "document.body.getAttribute('data-state')", ("done", "error"))


def test_a_chosen_image_shows_its_panel_score_and_decision(browser, page_url, phantom_data):
    image = phantom_data / "images" / "test_abnormal_0001.png"
    session = _open(browser, page_url)
    assert "model " in browser.evaluate(session, "document.getElementById('model').textContent")
    assert _choose(browser, session, image) == "done", browser.evaluate(session, "document.body.innerText")
    shown = browser.evaluate(
        session,
        """(function () {
          var panel = document.getElementById('panel');
          return {width: panel.naturalWidth, visible: !panel.hidden && panel.complete,
                  file: document.getElementById('r-file').textContent,
                  score: document.getElementById('r-score').textContent,
                  decision: document.getElementById('r-decision').textContent,
                  percentile: document.getElementById('r-percentile').textContent,
                  errors: document.body.getAttribute('data-errors')};
        })()""",
    )
    expected = post_files(page_url, [(image.name, image.read_bytes())])[2]["results"][0]
    assert shown["visible"] and shown["width"] > 900  # original | heat map | overlay, 320 px each
    assert shown["file"] == image.name and shown["errors"] == "0"
    assert float(shown["score"]) == pytest.approx(expected["score"], rel=1e-3)  # shown with 4 digits
    assert shown["decision"] == expected["decision"].upper()
    assert f"of the {expected['normal_images']} held-out normal images" in shown["percentile"]
    assert browser.console() == []


def test_a_file_that_is_no_image_shows_the_reason(browser, page_url, tmp_path):
    notes = tmp_path / "notes.png"
    notes.write_text("not pixels")
    session = _open(browser, page_url)
    assert _choose(browser, session, notes) == "error"
    status = browser.evaluate(session, "document.getElementById('status').textContent")
    assert "HTTP 415" in status and "notes.png: not an image" in status
    assert browser.evaluate(session, "document.getElementById('panel').hidden") is True
    # the browser itself logs the 415 response (a network entry); nothing else reaches the console
    network = [e for e in browser.console() if e["params"].get("entry", {}).get("source") == "network"]
    assert any("415" in e["params"]["entry"]["text"] for e in network), browser.console()  # the console is heard
    assert len(network) == len(browser.console())
    assert browser.evaluate(session, "document.body.getAttribute('data-errors')") == "0"
