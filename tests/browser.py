"""Open an HTML file in headless Chromium (Debian's `chromium`) and report what a reader's
browser saw: console messages (errors, uncaught exceptions), whether each image decoded, and the
DOM after load. Chromium's --dump-dom and its console log on stderr do, no DevTools client."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

# Appended to a copy of the page: after load, whether each <img> decoded, as a body attribute.
PROBE = """<script>window.addEventListener("load", function () {
  var images = Array.prototype.map.call(document.images, function (img) {
    return {alt: img.alt, ok: img.complete && img.naturalWidth > 0};
  });
  document.body.setAttribute("data-probe", JSON.stringify(images));
});</script>"""


@dataclass
class PageView:
    console: list[str]  # every console message and uncaught exception, as Chromium logs it
    images: list[dict]  # {"alt": ..., "ok": decoded with a non-zero width}
    dom: str


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def open_page(html: Path, timeout: int = 120) -> PageView:
    """Render `html` (a copy with PROBE appended) offline and collect what the page did."""
    exe = chromium()
    if exe is None:
        raise FileNotFoundError("chromium not found (Debian package 'chromium', see .ci/run)")
    with tempfile.TemporaryDirectory(prefix="bibench-browser-") as tmp:
        page = Path(tmp) / "page.html"
        page.write_text(html.read_text().replace("</body>", PROBE + "</body>"))
        proc = subprocess.run(
            [exe, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
             f"--user-data-dir={tmp}/profile", "--enable-logging=stderr", "--v=0",
             "--virtual-time-budget=10000", "--dump-dom", page.as_uri()],
            capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"chromium failed ({proc.returncode}): {proc.stderr[-2000:]}")
    console = [line for line in proc.stderr.splitlines() if ":CONSOLE" in line]
    match = re.search(r'data-probe="([^"]*)"', proc.stdout)
    images = json.loads(match.group(1).replace("&quot;", '"')) if match else []
    return PageView(console=console, images=images, dom=proc.stdout)
