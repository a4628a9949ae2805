"""The status page in a real headless Chromium against the session system.

Chromium (Debian's ``chromium``, installed by ``make system-deps``) is driven over the Chrome
DevTools Protocol on ``--remote-debugging-pipe``: JSON messages ended by a NUL byte, commands on
the browser's fd 3 and answers on its fd 4, so the standard library is enough.

The screenshot is kept under the test's ``tmp_path``; with ``AISYS_STATUS_SCREENSHOT=<path>``
it is copied there too (``docs/img/status-page.png`` for the README, see docs/observability.md).
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import select
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from cluster.base.settings import Settings
from tests.conftest import wait_for_condition
from tests.integration.conftest import ADMIN_PASSWORD

pytestmark = pytest.mark.integration

CHROMIUM = shutil.which("chromium")
EVIL = '<img src=x onerror="document.body.dataset.pwned=1"><script>alert(1)</script>'


class Browser:
    """A headless Chromium and one page of it, spoken to over the DevTools pipe."""

    def __init__(self, profile: Path, log: Path) -> None:
        assert CHROMIUM is not None, "chromium is missing: run make system-deps"
        # Above fd 4, so the child's dup2 onto 3 and 4 cannot overwrite one with the other.
        commands_r, commands_w = os.pipe()
        answers_r, answers_w = os.pipe()
        child_in = fcntl.fcntl(commands_r, fcntl.F_DUPFD_CLOEXEC, 10)
        child_out = fcntl.fcntl(answers_w, fcntl.F_DUPFD_CLOEXEC, 10)
        os.close(commands_r)
        os.close(answers_w)

        def pipes_on_3_and_4() -> None:
            os.dup2(child_in, 3)
            os.dup2(child_out, 4)

        self._log = log.open("wb")
        self.proc = subprocess.Popen(
            [
                CHROMIUM,
                "--headless=new",
                "--no-sandbox",  # root in CI
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--no-default-browser-check",
                "--remote-debugging-pipe",
                f"--user-data-dir={profile}",
                "--window-size=1400,1000",
                "about:blank",
            ],
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=self._log,
            pass_fds=(3, 4),
            preexec_fn=pipes_on_3_and_4,
        )
        os.close(child_in)
        os.close(child_out)
        self._out = commands_w
        self._in = answers_r
        self._buffer = b""
        self._next_id = 0
        self.session: str | None = None
        self.console: list[str] = []

    def send(self, method: str, params: dict[str, Any] | None = None, timeout_s: float = 30) -> Any:
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if self.session is not None and not method.startswith(("Target.", "Browser.")):
            message["sessionId"] = self.session
        os.write(self._out, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout_s
        while True:
            reply = self._read(deadline)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self._note(reply)

    def _note(self, event: dict[str, Any]) -> None:
        params = event.get("params", {})
        if event.get("method") == "Runtime.consoleAPICalled":
            self.console.append(" ".join(str(a.get("value")) for a in params.get("args", [])))
        elif event.get("method") == "Runtime.exceptionThrown":
            self.console.append(f"exception: {params.get('exceptionDetails')}")

    def _read(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._in], [], [], left)[0]:
                raise TimeoutError("no answer from chromium over the DevTools pipe")
            chunk = os.read(self._in, 1 << 20)
            if not chunk:
                raise RuntimeError(f"chromium closed the DevTools pipe (exit {self.proc.poll()})")
            self._buffer += chunk
        message, _, self._buffer = self._buffer.partition(b"\0")
        parsed: dict[str, Any] = json.loads(message)
        return parsed

    def open(self, url: str) -> None:
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        attached = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})
        self.session = attached["sessionId"]
        self.send("Runtime.enable")
        self.send("Page.enable")
        # Count what the Content-Security-Policy blocks, from before the page's first script.
        watch = (
            "window.cspBlocked = [];"
            "document.addEventListener('securitypolicyviolation',"
            " e => window.cspBlocked.push(e.violatedDirective + ' ' + e.blockedURI));"
        )
        self.send("Page.addScriptToEvaluateOnNewDocument", {"source": watch})
        self.send("Page.navigate", {"url": url})

    def eval(self, expression: str) -> Any:
        result = self.send(
            "Runtime.evaluate",
            {"expression": expression, "returnByValue": True, "awaitPromise": True},
        )
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def wait(self, expression: str, timeout_s: float = 60) -> None:
        try:
            wait_for_condition(lambda: self.eval(expression), timeout_s=timeout_s, interval_s=0.2)
        except AssertionError as exc:
            state = self.eval("document.body ? document.body.innerText.slice(0, 3000) : ''")
            raise AssertionError(f"{exc}\npage:\n{state}\nconsole: {self.console}") from exc

    def type_into(self, element_id: str, text: str) -> None:
        self.eval(f"document.getElementById({json.dumps(element_id)}).focus()")
        self.send("Input.insertText", {"text": text})

    def screenshot(self, path: Path) -> None:
        width, height = self.eval(
            "[document.documentElement.scrollWidth, document.documentElement.scrollHeight]"
        )
        clip = {"x": 0, "y": 0, "width": width, "height": height, "scale": 1}
        params = {"format": "png", "captureBeyondViewport": True, "clip": clip}
        shot = self.send("Page.captureScreenshot", params)
        path.write_bytes(base64.b64decode(shot["data"]))

    def close(self) -> None:
        try:
            self.send("Browser.close", timeout_s=5)
        except (RuntimeError, TimeoutError, OSError):
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
        os.close(self._out)
        os.close(self._in)
        self._log.close()


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Browser]:
    if CHROMIUM is None:
        pytest.fail("chromium is not installed: run `make system-deps` (Debian package chromium)")
    chromium = Browser(tmp_path / "profile", tmp_path / "chromium.log")
    try:
        yield chromium
    finally:
        chromium.close()


@pytest.fixture
def house(http: httpx.Client) -> Iterator[dict[str, str]]:
    """Something on every panel: an agent, a VRAM lease, a firing alert, an error event."""
    tag = uuid.uuid4().hex[:6]
    agent_id = f"StatusAgent-{tag}"
    registration = {"agent_id": agent_id, "host": "127.0.0.1", "port": 5709, "ttl_s": 600}
    assert http.post("/core/agents", json=registration).status_code in (200, 201)
    beat = http.put(f"/core/agents/{agent_id}/heartbeat", json={"status": "passing"})
    assert beat.status_code == 200, beat.text
    owner = f"status-owner-{tag}"
    lease = http.post("/resources/leases", json={"owner": owner, "vram_mb": 1024, "host": "pc2"})
    assert lease.status_code == 201, lease.text
    rule = f"StatusPage{tag}"
    spec = {"name": rule, "metric": "aisys_host_up", "op": ">=", "threshold": 0.0}
    assert http.put(f"/observability/rules/{rule}", json=spec).status_code == 200
    first = f"status-first-{tag} {EVIL}"
    assert http.post("/errors/", json={"agent": "tts", "message": first}).status_code == 200
    try:
        yield {"agent": agent_id, "owner": owner, "rule": rule, "tag": tag}
    finally:
        http.delete(f"/resources/leases/{lease.json()['lease_id']}")
        http.delete(f"/observability/rules/{rule}")
        http.delete(f"/core/agents/{agent_id}")


def _panel_has(panel: str, *texts: str) -> str:
    checks = " && ".join(f"t.includes({json.dumps(text)})" for text in texts)
    return f"(t => {checks})(document.getElementById({json.dumps(panel)}).textContent)"


def test_the_status_page_logs_in_shows_the_house_and_follows_it_live(
    aisys_system: Settings,
    http: httpx.Client,
    anonymous_http: httpx.Client,
    house: dict[str, str],
    browser: Browser,
    tmp_path: Path,
) -> None:
    base = f"http://127.0.0.1:{aisys_system.ports.http}"
    page = anonymous_http.get("/observability/status")
    assert (
        page.status_code == 200 and "script-src 'self'" in page.headers["content-security-policy"]
    )
    assert anonymous_http.get("/observability/status/snapshot").status_code == 401
    assert anonymous_http.post("/observability/status/ticket").status_code == 401
    assert (
        anonymous_http.get("/observability/status/events", params={"ticket": "x"}).status_code
        == 401
    )

    browser.open(f"{base}/observability/status")
    browser.wait("document.readyState === 'complete' && !!document.getElementById('login')")
    browser.type_into("username", aisys_system.security.admin_user)
    browser.type_into("password", ADMIN_PASSWORD)
    browser.eval("document.getElementById('submit').click()")
    browser.wait("document.body.dataset.state === 'live'")
    access = "JSON.parse(sessionStorage.getItem('aisys.status.tokens')).access"
    first_token = browser.eval(access)
    assert len(first_token) > 20
    assert browser.eval("getComputedStyle(document.getElementById('login')).display") == "none"
    assert browser.eval("getComputedStyle(document.getElementById('panels')).display") != "none"

    # Every panel, with what the session system holds.
    browser.wait(_panel_has("hosts", "mainpc", "pc2", "% of"))
    browser.wait(_panel_has("gpus", "RTX 4090", "RTX 3060", house["owner"], "leased 1024 MiB"))
    browser.wait(_panel_has("services", "core", "observability", "resources", "RUNNING"))
    browser.wait(_panel_has("agents", house["agent"], "passing", "s ago"))
    browser.wait(_panel_has("alerts", house["rule"]), timeout_s=90)
    browser.wait(_panel_has("errors", f"status-first-{house['tag']}", "<img src=x"))
    browser.wait(_panel_has("queue", "queued of at most", "in flight"))
    leased = "[...document.querySelectorAll('#gpus svg.vram rect.leased')]"
    assert browser.eval(f"{leased}.some(r => parseFloat(r.getAttribute('width')) > 0)")
    # Leased vs used per lease: nothing of the lease's holder is on the GPU, so its use is
    # unknown, not 0; the double's processes no lease explains are listed.
    cells = (
        "[...document.querySelectorAll('#gpus tr')].map(r => [...r.cells].map(c => c.textContent))"
        f".find(c => c[0] === {json.dumps(house['owner'])})"
    )
    assert browser.eval(cells) == [house["owner"], "", "1024 MiB", "unknown"]
    browser.wait(_panel_has("gpus", "memory no lease explains: pid 1422: 412 MiB, pid 20311"))
    assert browser.eval(_panel_has("gpus", "pid 2210: unknown"))
    # The attacker's markup is text: no element was made of it and nothing ran.
    assert browser.eval("document.querySelectorAll('#errors img, #errors script').length") == 0
    assert browser.eval("document.body.dataset.pwned === undefined")

    # A new error appears without a reload.
    browser.eval("window.loadedOnce = true")
    second = f"status-second-{house['tag']}"
    assert http.post("/errors/", json={"agent": "stt", "message": second}).status_code == 200
    browser.wait(_panel_has("errors", second), timeout_s=30)
    assert browser.eval("window.loadedOnce === true")

    shot = tmp_path / "status-page.png"
    browser.screenshot(shot)
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    if target := os.environ.get("AISYS_STATUS_SCREENSHOT"):
        shutil.copyfile(shot, target)

    # Each stream ends before Serve's request timeout would cut it; the page opens the next
    # with a new ticket, from its last error event, and keeps showing new ones.
    streams = int(browser.eval("document.body.dataset.streams"))
    browser.wait(
        f"Number(document.body.dataset.streams) > {streams}",
        timeout_s=aisys_system.ray.request_timeout_s + 10,
    )
    third = f"status-third-{house['tag']}"
    assert http.post("/errors/", json={"agent": "stt", "message": third}).status_code == 200
    browser.wait(_panel_has("errors", third), timeout_s=30)
    assert browser.eval("window.loadedOnce === true && document.body.dataset.state === 'live'")

    # The token pair is renewed through /security/refresh before the access token expires,
    # and a reloaded page goes on with the session's tokens, without the form.
    soon = (
        "(t => sessionStorage.setItem('aisys.status.tokens', JSON.stringify("
        "Object.assign(t, {expiresAt: Date.now() + 3000, lifetime: 10000}))))"
        "(JSON.parse(sessionStorage.getItem('aisys.status.tokens')))"
    )
    browser.eval(soon)
    browser.send("Page.reload")
    browser.wait("document.readyState === 'complete' && document.body.dataset.state === 'live'")
    browser.wait(f"{access} !== {json.dumps(first_token)}", timeout_s=30)
    browser.wait(_panel_has("errors", third))
    assert browser.eval("window.cspBlocked") == []


def test_a_stream_ticket_is_single_use(http: httpx.Client, anonymous_http: httpx.Client) -> None:
    ticket = http.post("/observability/status/ticket").json()
    url = ticket["events_url"]
    with anonymous_http.stream("GET", url) as stream:
        assert stream.status_code == 200
        assert stream.headers["content-type"].startswith("text/event-stream")
        lines = stream.iter_lines()
        assert next(lines).startswith("retry: ")
    again = anonymous_http.get(url)
    assert again.status_code == 401 and "already used" in again.text
    snapshot = http.get("/observability/status/snapshot").json()
    assert snapshot["unknown"] == {}
    assert {g["host"] for g in snapshot["gpus"]} == {"mainpc", "pc2"}
