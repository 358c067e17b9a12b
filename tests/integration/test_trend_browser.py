"""``harness trend`` over the recorded runs, rendered by a real headless Chromium.

Runs: the recorded local runs of tests/fixtures/runs/ (two process nights, one Docker) and a
night with a planted kubelet eviction (tests/fixtures/runs/plant.py). The trend must flag the
planted change with compare's own wording, and the page must load in Chromium with no error,
no network request, every plot decoded and drawn (the helpers of test_report_browser).
``HARNESS_SCREENSHOT_DIR`` keeps the screenshot.
"""

from __future__ import annotations

import base64
import io
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.integration.test_report_browser import FIXTURES, REPO, _errors, _page, chromium  # noqa: F401

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

LOCAL = [
    "20261123T183957Z-local-process-8ad9",
    "20261123T184023Z-local-process-2cef",
    "20261123T184050Z-local-docker-7953",
]


def _plant(src: str, dst: Path, **kw: object) -> Path:
    sys.path.insert(0, str(FIXTURES))
    try:
        from plant import plant  # tests/fixtures/runs/plant.py
    finally:
        sys.path.remove(str(FIXTURES))
    return Path(plant(FIXTURES / src, dst, **kw))  # type: ignore[arg-type]


def test_trend_flags_the_planted_change_and_renders(
    chromium: tuple[str, subprocess.Popen[bytes]],  # noqa: F811
    tmp_path: Path,
) -> None:
    from PIL import Image, ImageStat

    runs = tmp_path / "runs"
    for name in LOCAL:
        shutil.copytree(FIXTURES / name, runs / name)
    planted = _plant(LOCAL[1], runs, outcome="evicted", at_s=1.2)
    # the planted night comes last (its copy keeps the source's start time otherwise)
    meta = json.loads((planted / "run.json").read_text())
    meta["started"] = "2026-11-24T02:00:00+00:00"
    (planted / "run.json").write_text(json.dumps(meta))
    out = tmp_path / "trend.html"
    r = subprocess.run(
        [sys.executable, "-m", "harness", "trend", "--results", str(runs), "suite=local", "-o", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    assert "trend of 4 run(s)" in r.stdout

    base, _proc = chromium
    page = _page(base)
    try:
        for domain in ("Runtime", "Log", "Page", "Network"):
            page.call(f"{domain}.enable")
        page.call("Page.navigate", url=out.as_uri())
        page.wait_event("Page.loadEventFired")
        text = page.evaluate("document.body.innerText")
        images = page.evaluate(
            "Array.from(document.images).map(i => ({ok: i.complete && i.naturalWidth > 0,"
            " w: i.naturalWidth, h: i.naturalHeight, src: i.src.slice(0, 22)}))"
        )
        flagged = page.evaluate("Array.from(document.querySelectorAll('td.flag')).map(td => td.title)")
        height = int(page.evaluate("document.documentElement.scrollHeight"))
        page.call(
            "Emulation.setDeviceMetricsOverride", width=1400, height=height, deviceScaleFactor=1, mobile=False
        )
        shot = base64.b64decode(
            page.call("Page.captureScreenshot", format="png", captureBeyondViewport=True)["data"]
        )
        rects = page.evaluate(
            "Array.from(document.images).map(i => {const r = i.getBoundingClientRect();"
            " return [r.left + scrollX, r.top + scrollY, r.right + scrollX, r.bottom + scrollY]})"
        )
        time.sleep(0.2)
        page.call("Runtime.evaluate", expression="1")
        errors = _errors(page.events)
    finally:
        page.close()
    if os.environ.get("HARNESS_SCREENSHOT_DIR"):
        dest = Path(os.environ["HARNESS_SCREENSHOT_DIR"]) / "trend.png"
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(shot)
    assert errors == [], errors

    # the runs with their dates, kubelet versions and hosts; one plot per scenario
    scenarios = json.loads((runs / LOCAL[0] / "run.json").read_text())["scenarios"]
    for name in [*LOCAL, planted.name, *scenarios]:
        assert name in text, name
    assert "2026-11-23" in text and "2026-11-24" in text and "1.34" in text
    assert len(images) == len(scenarios)
    assert all(
        i["ok"] and i["w"] > 600 and i["h"] > 200 and i["src"] == "data:image/png;base64," for i in images
    )
    # compare's findings for the planted night, and only there
    assert "s1-container-limit/leaker: outcome oom_killed 3/3 -> evicted" in text
    assert "verdict regressed: 3/3 pass -> 0/1 pass" in text
    assert flagged and all("s1-container-limit/leaker" in f for f in flagged), flagged

    img = Image.open(io.BytesIO(shot)).convert("RGB")
    for left, top, right, bottom in rects:
        region = img.crop((int(left), int(top), int(right), int(bottom))).convert("L")
        assert ImageStat.Stat(region).stddev[0] > 20, f"plot at {(left, top)} looks blank"
