"""Debian's headless Chromium, as the browser tests run it on a page."""

from __future__ import annotations

import subprocess
from pathlib import Path

CHROMIUM = "/usr/bin/chromium"


def chromium(profile: Path, *args: str, budget_ms: int = 8000,
             file_access: bool = False) -> subprocess.CompletedProcess:
    """Run headless Chromium with its own ``profile`` directory and ``args`` (a page to dump
    or screenshot); ``budget_ms`` of virtual time for the page's scripts; ``file_access`` lets
    a file:// page load its neighbouring files. Fails unless Chromium exits 0."""
    return subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
         "--no-first-run", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", "--hide-scrollbars", f"--user-data-dir={profile}",
         *(["--allow-file-access-from-files"] if file_access else []),
         f"--virtual-time-budget={budget_ms}", *args],
        capture_output=True, timeout=120, check=True)
