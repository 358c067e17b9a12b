"""The rate the leak achieves at a given label, with and without the warm-up (harness/hostperf.py).

For each label (``--rates``, MiB/s) and warm-up mode (off, on), a real ``harness run`` (process
backend) of a one-scenario suite written here: a BestEffort pod on a 4Gi node leaks at the label
(chunk = rate x 50 ms) up to ``--max`` (default 2Gi) and exits. Before each run the benchmark waits
``--cool-down`` seconds, so that memory the previous run freed has gone cold again (this VM's
virtio-balloon reports free pages to the host, which discards them: Linux mm/page_reporting.c).

Columns: the run-start probe (first touch / retouch, 256 MiB), the warm-up (bytes, seconds, rate
while warming, rate after), and the leak's achieved rate (``alloc_rate_bytes_per_s`` of the
run's as-run prediction, from the program's own chunk lines).

Usage (as root, after ``make -C workloads``)::

    python benchmarks/bench_warm_up.py [--rates 256,1024] [--max 2Gi] [--cool-down 120]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pandas as pd

REPO = Path(__file__).resolve().parent.parent
MiB = 1 << 20

SUITE = """apiVersion: harness/v1
kind: Suite
name: bench-warm-up
profile: {repo}/profiles/local.yaml
node: {{memoryCapacity: 4Gi}}
sampleHz: 5
scenarios:
  - name: leak-{label}
    timeout: 40s
    backends: [process]
    workloads:
      - name: leaker
        resources: {{}}
        leak: {{chunk: {chunk}, interval: 50ms, max: {max}, hold: 0s}}
"""


def one(label: int, mode: str, max_q: str, tmp: Path) -> dict[str, Any]:
    suite = tmp / f"s{label}.yaml"
    suite.write_text(SUITE.format(repo=REPO, label=label, chunk=label * MiB // 20, max=max_q))
    res = tmp / "results"
    t0 = time.monotonic()
    p = subprocess.run(
        [sys.executable, "-m", "harness", "run", str(suite), "--warm-up", mode, "--results", str(res), "-q"],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    wall = time.monotonic() - t0
    run_dir = sorted(res.iterdir(), key=lambda d: d.stat().st_mtime)[-1]
    meta = json.loads((run_dir / "run.json").read_text())
    pred = pd.read_parquet(run_dir / "predictions.parquet")
    got = float(pred.loc[pred["name"] == "leaker", "alloc_rate_bytes_per_s"].iloc[0])
    pf = meta["host"].get("pageFaults", {})
    warm = next(iter((meta.get("warm_up") or {}).values()), {})
    return {
        "label MiB/s": label,
        "warm-up": mode,
        "probe first/retouch MiB/s": f"{pf.get('fresh_bytes_per_s', 0) / MiB:.0f}/{pf.get('retouch_bytes_per_s', 0) / MiB:.0f}",
        "warm-up MiB": round(warm["bytes"] / MiB) if warm.get("done") else 0,
        "warm-up s": warm.get("seconds", 0.0) if warm.get("done") else 0.0,
        "warming/after MiB/s": f"{warm['rate_before'] / MiB:.0f}/{warm['rate_after'] / MiB:.0f}"
        if warm.get("done")
        else "-",
        "achieved MiB/s": round(got / MiB),
        "run s": round(wall, 1),
        "exit": p.returncode,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rates", default="256,1024", help="labels, MiB/s, comma separated")
    ap.add_argument("--max", default="2Gi", help="the leak's max (bytes it allocates per run)")
    ap.add_argument("--cool-down", type=float, default=120.0, help="seconds to wait before each run")
    ap.add_argument("--modes", default="off,on")
    a = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-warm-up-") as d:
        for label in (int(x) for x in a.rates.split(",")):
            for mode in a.modes.split(","):
                time.sleep(a.cool_down)
                rows.append(one(label, mode, a.max, Path(d)))
                print(json.dumps(rows[-1]), flush=True)
    print(pd.DataFrame(rows).to_string(index=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
