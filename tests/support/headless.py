"""Headless Chromium for tests: open a page and take screenshots over the DevTools protocol on a pipe.

``--remote-debugging-pipe`` makes Chromium read DevTools commands from fd 3 and write replies to fd 4,
JSON messages ended by a NUL byte: no port, no websocket library. WebGL comes from SwiftShader, the
software renderer Chromium ships (Rerun's web viewer needs WebGL2 or WebGPU).
"""

from __future__ import annotations

import base64
import json
import os
import select
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

__all__ = ["Chromium", "chromium_path"]

#: The longest a DevTools command may wait for its reply: a stalled page must fail the test, not hang it.
REPLY_S = 30.0

#: Debian's binary first: its /usr/bin/chromium is a shell launcher that may handle fds 3 and 4 its way.
DEBIAN_BINARY = "/usr/lib/chromium/chromium"
CANDIDATES = ("chromium", "chromium-browser", "google-chrome")


def chromium_path() -> str | None:
    """Debian's Chromium (package `chromium`), else one on PATH, else None."""
    if os.access(DEBIAN_BINARY, os.X_OK):
        return DEBIAN_BINARY
    return next((path for name in CANDIDATES if (path := shutil.which(name))), None)


class Chromium:
    """One headless Chromium with one page at `url`, `width` x `height`; `screenshot` reads the page."""

    def __init__(self, url: str, width: int = 1600, height: int = 1000) -> None:
        binary = chromium_path()
        if binary is None:
            raise FileNotFoundError("no chromium on PATH (apt-get install chromium)")
        self._profile = tempfile.TemporaryDirectory(prefix="chromium-")
        to_chrome_r, self._to_chrome = os.pipe()
        self._from_chrome, from_chrome_w = os.pipe()

        def wire_fds() -> None:  # in the child: its ends become fds 3 and 4, as the flag expects
            read_end, write_end = os.dup(to_chrome_r), os.dup(from_chrome_w)
            os.dup2(read_end, 3)
            os.dup2(write_end, 4)
            os.set_inheritable(3, True)  # dup2 onto itself (os.dup gave 3 or 4) keeps close-on-exec
            os.set_inheritable(4, True)

        command = [
            binary,
            "--headless=new",
            "--no-sandbox",  # root in a container
            "--remote-debugging-pipe",
            f"--user-data-dir={self._profile.name}",
            f"--window-size={width},{height}",
            "--use-angle=swiftshader",
            "--enable-unsafe-swiftshader",
            "--ignore-gpu-blocklist",
            "--no-first-run",
            "--disable-background-networking",  # nothing leaves the host
            url,
        ]
        self.process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            pass_fds=(to_chrome_r, from_chrome_w, 3, 4),  # closing the others follows preexec_fn
            preexec_fn=wire_fds,
        )
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        self._buffer = b""
        self._id = 0
        self.requests: dict[str, str] = {}  # request id -> URL, every request since the reload below
        self.blocked: dict[str, str] = {}  # request id -> why the browser did not send it (e.g. "csp")
        self._session = self._attach_page()
        # Watch the network from the first request on: enable, then load the page again.
        self._send("Network.enable", {}, self._session)
        self._send("Page.reload", {"ignoreCache": True}, self._session)

    def _send(self, method: str, params: dict[str, Any] | None = None, session: str | None = None) -> Any:
        """The result of one DevTools command; TimeoutError when no reply came within REPLY_S (a reply
        that comes later is passed over, as it carries the old id)."""
        self._id += 1
        deadline = time.monotonic() + REPLY_S
        message: dict[str, Any] = {"id": self._id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self._to_chrome, json.dumps(message).encode() + b"\0")
        while True:
            reply = self._read(deadline, method)
            if reply.get("method") == "Network.requestWillBeSent":
                self.requests[reply["params"]["requestId"]] = reply["params"]["request"]["url"]
            elif reply.get("method") == "Network.loadingFailed" and reply["params"].get("blockedReason"):
                self.blocked[reply["params"]["requestId"]] = reply["params"]["blockedReason"]
            if reply.get("id") == self._id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})

    def _read(self, deadline: float, method: str) -> dict[str, Any]:
        while b"\0" not in self._buffer:
            ready, _, _ = select.select([self._from_chrome], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                raise TimeoutError(f"chromium sent no reply to {method} within {REPLY_S:g} s")
            chunk = os.read(self._from_chrome, 1 << 20)
            if not chunk:
                raise RuntimeError("chromium closed its DevTools pipe")
            self._buffer += chunk
        message, _, self._buffer = self._buffer.partition(b"\0")
        return json.loads(message)

    def _attach_page(self) -> str:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            targets = self._send("Target.getTargets")["targetInfos"]
            pages = [t for t in targets if t["type"] == "page"]
            if pages:
                attached = self._send(
                    "Target.attachToTarget", {"targetId": pages[0]["targetId"], "flatten": True}
                )
                return str(attached["sessionId"])
            time.sleep(0.2)
        raise RuntimeError("chromium opened no page")

    def evaluate(self, expression: str) -> Any:
        result = self._send(
            "Runtime.evaluate", {"expression": expression, "returnByValue": True}, self._session
        )
        return result.get("result", {}).get("value")

    def screenshot(self, path: Path, attempts: int = 5) -> Path:
        """The page as it is now, as a PNG at `path`. Headless Chromium can leave a capture unanswered
        while the page waits for a frame; the page is then brought to the front and asked again. It can
        also have swapped the page's target under the session ("Not attached to an active page"); the
        page is then attached to again."""
        for attempt in range(attempts):
            try:
                data = self._send("Page.captureScreenshot", {"format": "png"}, self._session)["data"]
                break
            except TimeoutError:
                if attempt == attempts - 1:
                    raise
                self._send("Page.bringToFront", {}, self._session)
            except RuntimeError as exc:
                if attempt == attempts - 1 or "Not attached to an active page" not in str(exc):
                    raise
                time.sleep(0.5)  # the new target may not be listed yet on a busy machine
                self._session = self._attach_page()
        path.write_bytes(base64.b64decode(data))
        return path

    def close(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        os.close(self._to_chrome)
        os.close(self._from_chrome)
        self._profile.cleanup()

    def __enter__(self) -> Chromium:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
