"""Headless Chromium driven over the DevTools protocol on a pipe, with nothing watching its
requests.

Playwright enables the protocol's Network domain on every page, so that it can report each
request: the browser then sends several events per request to the driver and waits on none of
them, but serialising them is processor time on the same two cores. Measured on this machine,
300 presigned fetches took 1.9-2.1 s under Playwright and 1.3-1.5 s without it, the same loop
alternated. A patient's or a doctor's browser has no driver attached, so the viewer bench
times the page this way: it only opens pages, sets cookies and reads values the page computed.
"""

import contextlib
import fcntl
import json
import os
import subprocess
import time


class Chromium:
    def __init__(self, executable: str, args: list[str]):
        # Chromium reads commands on descriptor 3 and answers on 4 (--remote-debugging-pipe).
        to_browser_read, self._to_browser = os.pipe()
        self._from_browser, from_browser_write = os.pipe()

        def wire_pipes():
            # In the child, before exec. Copied above 10 first, so that neither lands on the
            # other's number nor on its own (dup2 onto itself would keep close-on-exec).
            commands = fcntl.fcntl(to_browser_read, fcntl.F_DUPFD_CLOEXEC, 10)
            answers = fcntl.fcntl(from_browser_write, fcntl.F_DUPFD_CLOEXEC, 10)
            os.dup2(commands, 3)
            os.dup2(answers, 4)

        self.process = subprocess.Popen(
            [executable, "--headless=new", "--remote-debugging-pipe", *args, "about:blank"],
            preexec_fn=wire_pipes,
            close_fds=False,  # closing would run after wire_pipes and take 3 and 4 with it
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        os.close(to_browser_read)
        os.close(from_browser_write)
        self._pending = b""
        self._last_id = 0

    def send(self, method: str, params: dict | None = None, session: str | None = None):
        self._last_id += 1
        message = {"id": self._last_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self._to_browser, json.dumps(message).encode() + b"\0")
        while True:  # events (none are enabled, but targets announce themselves) are skipped
            reply = self._receive()
            if reply.get("id") == self._last_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error'].get('message')}")
                return reply["result"]

    def _receive(self) -> dict:
        while b"\0" not in self._pending:
            chunk = os.read(self._from_browser, 1 << 16)
            if not chunk:
                raise RuntimeError("Chromium closed its DevTools pipe")
            self._pending += chunk
        raw, self._pending = self._pending.split(b"\0", 1)
        return json.loads(raw)

    def new_context(self, cookies: dict[str, str] | None = None, url: str = "") -> str:
        """A fresh profile in memory (its own cookies and cache), with `cookies` set for `url`."""
        context = self.send("Target.createBrowserContext")["browserContextId"]
        if cookies:
            jar = [{"name": name, "value": value, "url": url} for name, value in cookies.items()]
            self.send("Storage.setCookies", {"cookies": jar, "browserContextId": context})
        return context

    def close_context(self, context: str) -> None:
        self.send("Target.disposeBrowserContext", {"browserContextId": context})

    def open(self, context: str, url: str) -> "Page":
        target = self.send("Target.createTarget", {"url": url, "browserContextId": context})
        session = self.send(
            "Target.attachToTarget", {"targetId": target["targetId"], "flatten": True}
        )["sessionId"]
        return Page(self, target["targetId"], session)

    def close(self) -> None:
        with contextlib.suppress(RuntimeError, OSError):  # already gone
            self.send("Browser.close")
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
        os.close(self._to_browser)
        os.close(self._from_browser)


class Page:
    def __init__(self, browser: Chromium, target: str, session: str):
        self.browser, self.target, self.session = browser, target, session

    def evaluate(self, expression: str):
        """The value of a JavaScript expression (a promise is awaited), as JSON."""
        result = self.browser.send(
            "Runtime.evaluate",
            {"expression": expression, "returnByValue": True, "awaitPromise": True},
            self.session,
        )
        if "exceptionDetails" in result:
            raise RuntimeError(result["exceptionDetails"].get("text", "script error"))
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout: float, poll: float = 0.05):
        """Evaluate until the value is truthy; it is then returned. Polled on a timer, so the
        page draws no frames for the waiting."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                value = self.evaluate(expression)
            except RuntimeError:  # the page is still navigating
                value = None
            if value:
                return value
            if time.monotonic() > deadline:
                raise TimeoutError(f"still false after {timeout} s: {expression}")
            time.sleep(poll)

    def close(self) -> None:
        self.browser.send("Target.closeTarget", {"targetId": self.target})
