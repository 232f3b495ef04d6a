"""Open an HTML page in headless Chromium and report what a reader would stumble on.

A copy of the page gets two small scripts: one at the top of ``<head>`` that records
script errors, failed resource loads and ``console.error`` calls, and one that, on
``load``, writes a JSON verdict into the page — the images and which of them did not
decode (``naturalWidth`` 0), the page's scroll width against the viewport's, the
errors.  ``chromium --dump-dom`` prints the DOM after ``load``, and the verdict is
read back from it; Chromium's own log (``--enable-logging=stderr``) is searched for
console messages too.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

BROWSERS = ("chromium", "chromium-browser", "google-chrome")

_RECORD_ERRORS = """<script>
window.__descentlabErrors = [];
window.addEventListener("error", (e) => window.__descentlabErrors.push(
  e.message || ("failed to load " + (e.target && e.target.tagName))), true);
const __consoleError = console.error;
console.error = (...args) => { window.__descentlabErrors.push(args.join(" "));
  __consoleError(...args); };
</script>"""

_VERDICT = """<script>
window.addEventListener("load", () => {
  const images = [...document.images];
  const verdict = {
    images: images.length,
    broken: images.filter((i) => !i.complete || i.naturalWidth === 0).map((i) => i.alt),
    pageWidth: document.documentElement.scrollWidth,
    viewportWidth: document.documentElement.clientWidth,
    errors: window.__descentlabErrors,
  };
  const out = document.createElement("pre");
  out.id = "descentlab-verdict";
  out.textContent = JSON.stringify(verdict);
  document.body.appendChild(out);
});
</script>"""


def find_browser() -> str:
    """The Chromium binary; skipped where there is none, except in CI (where .ci/run
    installs it, so a missing browser is a failure, not a silent pass)."""
    for name in BROWSERS:
        path = shutil.which(name)
        if path:
            return path
    if os.environ.get("CI"):
        pytest.fail("Chromium is not installed (.ci/run installs it: apt-get install chromium)")
    pytest.skip("Chromium is not installed (apt-get install -y chromium)")


def check_in_browser(html: Path, tmp_path: Path, width: int = 1280) -> dict[str, Any]:
    """Render ``html`` at ``width`` pixels; return the verdict plus Chromium's console lines."""
    browser = find_browser()
    page = html.read_text(encoding="utf-8")
    page = page.replace("<head>", "<head>" + _RECORD_ERRORS, 1)
    page = page.replace("</body>", _VERDICT + "</body>", 1)
    probe = html.with_name("browser-check.html")
    probe.write_text(page, encoding="utf-8")
    profile = tmp_path / "chromium-profile"
    cmd = [
        browser,
        "--headless",
        "--no-sandbox",  # CI containers run as root
        "--disable-gpu",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        f"--window-size={width},2000",
        "--virtual-time-budget=5000",
        "--enable-logging=stderr",
        "--v=0",
        "--dump-dom",
        probe.resolve().as_uri(),
    ]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
    finally:
        probe.unlink(missing_ok=True)
    found = re.search(r'<pre id="descentlab-verdict">(.*?)</pre>', done.stdout, re.S)
    assert found, f"Chromium printed no verdict (exit {done.returncode}): {done.stderr[-2000:]}"
    text = found.group(1).replace("&quot;", '"').replace("&lt;", "<").replace("&gt;", ">")
    verdict = json.loads(text.replace("&amp;", "&"))
    verdict["console"] = [line for line in done.stderr.splitlines() if ":CONSOLE" in line]
    return verdict


def problems(verdict: dict[str, Any]) -> list[str]:
    """What is wrong with a rendered page, in words; empty when nothing is."""
    out = []
    if verdict["broken"]:
        out.append(f"images that did not load: {verdict['broken']}")
    if verdict["pageWidth"] > verdict["viewportWidth"]:
        out.append(
            f"content {verdict['pageWidth']} px wide in a {verdict['viewportWidth']} px page"
        )
    out += [f"error: {e}" for e in verdict["errors"]]
    out += [f"console: {line}" for line in verdict["console"]]
    return out
