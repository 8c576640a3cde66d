"""A page opened in headless Chromium (Debian's chromium-headless-shell, installed by the test
command), driven over the DevTools protocol on a pipe: what the user sees (the DOM after the
page's scripts ran), every console message and uncaught error, every network request the page
tried (the browser's own record, and a proxy that any request would have to pass), and a
screenshot of the whole page.

    python tests/browser.py screenshot REPORT.html OUT.png   # the README's picture
"""
import base64
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import typing as tp
from pathlib import Path

BINARY = "chromium-headless-shell"


def available() -> bool:
    return shutil.which(BINARY) is not None


class Trap:
    """A proxy on localhost that records every connection (the browser sends every request
    there, loopback included) and answers none."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.seen: tp.List[str] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            conn.settimeout(2)
            try:
                self.seen.append(conn.recv(1024).split(b"\r\n")[0].decode(errors="replace"))
            except OSError:
                self.seen.append("(a connection)")
            conn.close()

    def close(self) -> None:
        self.sock.close()


class Page:
    """One tab of a fresh headless Chromium (its own profile dir) with ``url`` loaded."""

    def __init__(self, url: str, profile: Path, width: int = 1400, height: int = 1000) -> None:
        self.trap = Trap()
        to_browser, self._ours_w = os.pipe()
        self._ours_r, from_browser = os.pipe()

        def fds() -> None:  # the browser reads commands on fd 3 and answers on fd 4
            high_r, high_w = os.dup(to_browser) + 100, os.dup(from_browser) + 100  # past 3 and 4
            os.dup2(to_browser, high_r)
            os.dup2(from_browser, high_w)
            os.dup2(high_r, 3)
            os.dup2(high_w, 4)

        self.proc = subprocess.Popen(
            [BINARY, "--remote-debugging-pipe", "--no-sandbox", "--disable-gpu", "--enable-unsafe-swiftshader",
             "--no-first-run",
             f"--user-data-dir={profile}", f"--window-size={width},{height}", "--hide-scrollbars",
             f"--proxy-server=http://127.0.0.1:{self.trap.port}", "--proxy-bypass-list=<-loopback>",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "about:blank"],
            preexec_fn=fds, close_fds=False, stdout=subprocess.DEVNULL,  # close_fds would close 3 and 4
            stderr=subprocess.DEVNULL)
        os.close(to_browser)
        os.close(from_browser)
        self._buffer = b""
        self._id = 0
        self.events: tp.List[dict] = []
        target = self.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        self.session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Runtime", "Log", "Network", "Page"):
            self.call(f"{domain}.enable", session=True)
        self.call("Emulation.setDeviceMetricsOverride", {"width": width, "height": height, "deviceScaleFactor": 1,
                                                         "mobile": False}, session=True)
        self.call("Page.navigate", {"url": url}, session=True)

    def call(self, method: str, params: tp.Optional[dict] = None, session: bool = False) -> dict:
        self._id += 1
        message = {"id": self._id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = self.session
        os.write(self._ours_w, json.dumps(message).encode() + b"\0")
        while True:
            reply = self._read()
            if reply.get("id") == self._id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def _read(self) -> dict:
        while b"\0" not in self._buffer:
            chunk = os.read(self._ours_r, 1 << 20)
            if not chunk:
                raise RuntimeError("the browser went away")
            self._buffer += chunk
        text, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(text)

    def evaluate(self, expression: str) -> tp.Any:
        result = self.call("Runtime.evaluate", {"expression": expression, "returnByValue": True,
                                                "awaitPromise": True}, session=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression[:60]}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout: float = 60.0) -> tp.Any:
        """Until ``expression`` is truthy in the page; its value."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            value = self.evaluate(expression)
            if value:
                return value
            time.sleep(0.2)
        raise TimeoutError(f"the page never had {expression}")

    def problems(self) -> tp.List[str]:
        """Console errors and warnings, uncaught exceptions, the browser's own errors (a
        refused load, a failed request; not its warnings about this machine's missing GPU)."""
        out = []
        for e in self.events:
            p = e.get("params", {})
            if e.get("method") == "Runtime.consoleAPICalled" and p.get("type") in ("error", "warning", "assert"):
                out.append("console: " + " ".join(str(a.get("value", a.get("description"))) for a in p.get("args", [])))
            elif e.get("method") == "Runtime.exceptionThrown":
                out.append("exception: " + json.dumps(p.get("exceptionDetails", {}))[:500])
            elif e.get("method") == "Log.entryAdded" and p.get("entry", {}).get("level") == "error":
                out.append("log: " + p["entry"].get("text", ""))
        return out

    def requests(self) -> tp.List[str]:
        """Every request the page made beyond its own file (and data:/blob: URLs, which
        never leave the browser), as the browser and the trap saw them."""
        urls = [e["params"]["request"]["url"] for e in self.events if e.get("method") == "Network.requestWillBeSent"]
        return [u for u in urls if not u.startswith(("file://", "data:", "blob:"))] + self.trap.seen

    def screenshot(self, path: Path) -> None:
        height = int(self.evaluate("document.documentElement.scrollHeight"))
        self.call("Emulation.setDeviceMetricsOverride", {"width": 1400, "height": height, "deviceScaleFactor": 1,
                                                         "mobile": False}, session=True)
        time.sleep(0.5)
        shot = self.call("Page.captureScreenshot", {"format": "png"}, session=True)
        Path(path).write_bytes(base64.b64decode(shot["data"]))

    def close(self) -> None:
        try:
            self.call("Browser.close")
        except (RuntimeError, OSError):
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self._ours_w)
        os.close(self._ours_r)
        self.trap.close()


def open_page(path: Path, profile: Path) -> Page:
    page = Page(Path(path).resolve().as_uri(), profile)
    page.wait_for("document.body && document.body.dataset.ready")
    return page


if __name__ == "__main__":
    if len(sys.argv) != 4 or sys.argv[1] != "screenshot":
        sys.exit(__doc__)
    import tempfile

    with tempfile.TemporaryDirectory() as profile:
        page = open_page(Path(sys.argv[2]), Path(profile))
        try:
            page.screenshot(Path(sys.argv[3]))
        finally:
            page.close()
