"""Reports of recorded runs, rendered by a real headless Chromium (Debian's package).

The runs under tests/fixtures/runs/ were recorded on this machine by ``harness run
suites/local.yaml`` (process and Docker backends); one more is derived from a recorded run
by tests/fixtures/runs/plant.py (a kubelet eviction planted instead of the kernel OOM kill,
with kubelet events the real runs do not have). For each: ``harness report`` writes the HTML,
Chromium loads it over the DevTools protocol (127.0.0.1 only, no network), and the test
asserts no console error, no exception, no failed load, every plot decoded, and a screenshot
whose plot regions are not blank. Chromium is stopped by its pid.
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures" / "runs"
CHROMIUM = Path("/usr/bin/chromium")
RUNS = sorted(p.name for p in FIXTURES.iterdir() if (p / "run.json").is_file())

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--disable-default-apps",
    "--hide-scrollbars",
    "--mute-audio",
    "--remote-debugging-address=127.0.0.1",
    "--remote-debugging-port=0",
    "--window-size=1400,1000",
]


class DevTools:
    """A minimal Chrome DevTools Protocol client over one page's websocket."""

    def __init__(self, ws_url: str) -> None:
        import websocket  # websocket-client, a dependency of the kubernetes client

        self.ws = websocket.create_connection(ws_url, timeout=30, suppress_origin=True)
        self.next_id = 0
        self.events: list[dict[str, Any]] = []

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        self.next_id += 1
        my_id = self.next_id
        self.ws.send(json.dumps({"id": my_id, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv())
            if msg.get("id") == my_id:
                if "error" in msg:
                    raise AssertionError(f"{method}: {msg['error']}")
                return dict(msg.get("result", {}))
            if "method" in msg:
                self.events.append(msg)

    def wait_event(self, method: str, timeout: float = 30) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        for e in self.events:
            if e["method"] == method:
                return e
        while time.monotonic() < deadline:
            msg = json.loads(self.ws.recv())
            if "method" in msg:
                self.events.append(msg)
                if msg["method"] == method:
                    return msg
        raise AssertionError(f"no {method} within {timeout}s")

    def evaluate(self, expr: str) -> Any:
        res = self.call("Runtime.evaluate", expression=expr, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in res:
            raise AssertionError(f"{expr}: {res['exceptionDetails']}")
        return res["result"].get("value")

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.ws.close()


def _session_pids(sid: int) -> list[int]:
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            with contextlib.suppress(OSError, ValueError, IndexError):
                stat = (d / "stat").read_text()
                fields = stat[stat.rindex(")") + 2 :].split()
                if int(fields[3]) == sid:  # field 6 of /proc/pid/stat: session id
                    out.append(int(d.name))
    return out


@pytest.fixture(scope="module")
def chromium(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """A headless Chromium with a fresh profile; yields (DevTools HTTP base URL, process)."""
    if not CHROMIUM.exists():
        pytest.fail("/usr/bin/chromium is missing: run scripts/setup.sh (Debian package chromium)")
    profile = tmp_path_factory.mktemp("chromium-profile")
    log = open(profile.parent / "chromium.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        [str(CHROMIUM), *FLAGS, f"--user-data-dir={profile}", "about:blank"],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its helpers (zygote, renderers) share this session id
    )
    try:
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 30
        while not port_file.exists() or not port_file.read_text().strip():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(
                    f"Chromium did not start: {(profile.parent / 'chromium.log').read_text()[-2000:]}"
                )
            time.sleep(0.05)
        port = int(port_file.read_text().split()[0])
        yield f"http://127.0.0.1:{port}", proc
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        deadline = time.monotonic() + 10
        while (left := _session_pids(proc.pid)) and time.monotonic() < deadline:
            for pid in left:  # helpers that outlived the browser, by pid
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.1)
        log.close()
        assert not _session_pids(proc.pid), "Chromium helpers survived SIGKILL"


def _page(base: str) -> DevTools:
    req = urllib.request.Request(f"{base}/json/new?about:blank", method="PUT")
    with urllib.request.urlopen(req, timeout=10) as r:
        target = json.loads(r.read())
    return DevTools(target["webSocketDebuggerUrl"])


def _errors(events: list[dict[str, Any]]) -> list[str]:
    out = []
    for e in events:
        m, p = e["method"], e.get("params", {})
        if m == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert", "warning"):
            out.append(f"console.{p['type']}: {[a.get('value') for a in p.get('args', [])]}")
        elif m == "Runtime.exceptionThrown":
            out.append(f"exception: {p.get('exceptionDetails', {}).get('text')}")
        elif m == "Log.entryAdded" and p.get("entry", {}).get("level") in ("error", "warning"):
            out.append(f"log {p['entry']['level']}: {p['entry'].get('text')} {p['entry'].get('url', '')}")
        elif m == "Network.loadingFailed":
            out.append(f"load failed: {p.get('errorText')}")
        elif m == "Network.requestWillBeSent":
            url = p.get("request", {}).get("url", "")
            if not url.startswith(("file:", "data:", "about:")):
                out.append(f"network request: {url}")
    return out


def _plant(tmp: Path) -> Path:
    sys.path.insert(0, str(FIXTURES))
    try:
        from plant import plant  # tests/fixtures/runs/plant.py
    finally:
        sys.path.remove(str(FIXTURES))
    return plant(FIXTURES / RUNS[0], tmp, outcome="evicted", at_s=1.2)


def _report(run_dir: Path, out: Path) -> None:
    r = subprocess.run(
        [sys.executable, "-m", "harness", "report", str(run_dir), "-o", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    assert f"written to {out}" in r.stdout


@pytest.mark.parametrize("which", [*RUNS, "planted-eviction"])
def test_report_renders_in_chromium(
    which: str, chromium: tuple[str, subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    from PIL import Image, ImageStat

    if which == "planted-eviction":
        run_dir = _plant(tmp_path / "runs")
    else:
        run_dir = tmp_path / "runs" / which  # a copy: the report must not need to write into the fixtures
        shutil.copytree(FIXTURES / which, run_dir)
    out = tmp_path / "report" / "index.html"
    _report(run_dir, out)
    meta = json.loads((run_dir / "run.json").read_text())
    pngs = sorted(out.parent.glob("index-*.png"))
    assert len(pngs) == len(meta["scenarios"]), pngs

    base, _proc = chromium
    page = _page(base)
    try:
        for domain in ("Runtime", "Log", "Page", "Network"):
            page.call(f"{domain}.enable")
        page.call("Page.navigate", url=out.as_uri())
        page.wait_event("Page.loadEventFired")
        images = page.evaluate(
            "Array.from(document.images).map(i => ({alt: i.alt, ok: i.complete && i.naturalWidth > 0,"
            " w: i.naturalWidth, h: i.naturalHeight, src: i.src.slice(0, 22)}))"
        )
        assert len(images) == len(meta["scenarios"])
        assert all(i["ok"] and i["w"] > 600 and i["h"] > 300 for i in images), images
        assert all(i["src"] == "data:image/png;base64," for i in images), images
        text = page.evaluate("document.body.innerText")
        assert meta["run_id"] in text
        for sc in meta["scenarios"]:
            assert sc in text
        assert "Host facts" in text and "Versions" in text and meta["host"]["kernel"] in text
        # a failed verdict is shown as such, exactly when the run has one
        assert ("MISMATCH" in text) == (meta["verdicts_passed"] < meta["verdicts_total"])
        if which == "planted-eviction":
            assert "predicted oom_killed, observed evicted" in text
        # the page at its full height, one screenshot
        height = int(page.evaluate("document.documentElement.scrollHeight"))
        page.call(
            "Emulation.setDeviceMetricsOverride", width=1400, height=height, deviceScaleFactor=1, mobile=False
        )
        shot = base64.b64decode(
            page.call("Page.captureScreenshot", format="png", captureBeyondViewport=True)["data"]
        )
        (tmp_path / "screenshot.png").write_bytes(shot)
        if os.environ.get("HARNESS_SCREENSHOT_DIR"):
            dest = Path(os.environ["HARNESS_SCREENSHOT_DIR"]) / f"report-{which}.png"
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(shot)
        rects = page.evaluate(
            "Array.from(document.images).map(i => {const r = i.getBoundingClientRect();"
            " return [r.left + scrollX, r.top + scrollY, r.right + scrollX, r.bottom + scrollY]})"
        )
        time.sleep(0.2)  # late console messages, if any
        page.call("Runtime.evaluate", expression="1")  # drains pending events
        errors = _errors(page.events)
    finally:
        page.close()
    assert errors == [], errors

    img = Image.open(io.BytesIO(shot)).convert("RGB")
    assert img.size[1] >= height - 1
    for left, top, right, bottom in rects:
        assert right - left > 600 and bottom - top > 300, (left, top, right, bottom)
        region = img.crop((int(left), int(top), int(right), int(bottom)))
        stat = ImageStat.Stat(region.convert("L"))
        non_white = sum(region.convert("L").point(lambda v: 255 if v < 200 else 0).histogram()[255:])
        share = non_white / (region.size[0] * region.size[1])
        colors = len(region.getcolors(maxcolors=1 << 16) or [])
        # a drawn plot: lines, text and markers in several colours, not a blank or flat box
        assert stat.stddev[0] > 20, f"plot at {rects} looks blank (stddev {stat.stddev[0]:.1f})"
        assert 0.02 < share < 0.9, f"plot at {rects}: {share:.1%} of pixels drawn"
        assert colors > 50, f"plot at {rects}: only {colors} colours"
