"""Debian's headless Chromium driven over the DevTools protocol, for pages a test must act
on (type into a form, submit it) rather than only dump."""

from __future__ import annotations

import itertools
import json
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
from websockets.sync.client import ClientConnection, connect

from support.browser import CHROMIUM
from support.waiting import free_port, wait_for


@contextmanager
def browser(profile: Path) -> Iterator[Page]:
    """One headless Chromium with its own ``profile``, and its first page."""
    port = free_port()
    process = subprocess.Popen(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={profile}", f"--remote-debugging-port={port}", "about:blank"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        target = wait_for(lambda: _first_page(port), 30, "Chromium's DevTools endpoint")
        with connect(target["webSocketDebuggerUrl"], max_size=None) as socket:
            yield Page(socket)
    finally:
        process.kill()
        process.wait(timeout=30)


class Page:
    def __init__(self, socket: ClientConnection) -> None:
        self.socket = socket
        self._ids = itertools.count(1)

    def call(self, method: str, **params: Any) -> dict:
        message_id = next(self._ids)
        self.socket.send(json.dumps({"id": message_id, "method": method, "params": params}))
        while True:  # events arrive in between; only our answer counts
            message = json.loads(self.socket.recv(timeout=30))
            if message.get("id") == message_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message["result"]

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page (promises awaited)."""
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True,
                           awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def open(self, url: str) -> None:
        self.call("Page.navigate", url=url)


def _first_page(port: int) -> dict | None:
    try:
        targets = httpx.get(f"http://127.0.0.1:{port}/json/list", timeout=2).json()
    except httpx.HTTPError:
        return None
    return next((t for t in targets if t.get("type") == "page"), None)
