"""Report of a long scenario: size of the HTML and PNGs and render time, by sampled duration.

Writes one run per ``--minutes`` value (default 1, 10, 60: one hour) with one scenario of
``--workloads`` workloads sampled at ``--hz`` (default 10), with the writers of
``benchmarks/bench_compare.py`` (real ``RunStore`` tables, ``samples.parquet`` in the sampler's
schema; the full data stays in it), then runs ``python -m harness report RUN -o DIR/report.html``
(process start included) and prints wall time, peak RSS, samples.parquet size, HTML and PNG sizes.
Growth with duration tells whether the plot is bounded (downsampled) or grows with the samples.

Usage::

    python benchmarks/bench_report.py [--minutes 1,10,60] [--hz 10] [--workloads 3]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from bench_compare import make_run  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--minutes", default="1,10,60", help="sampled minutes of the scenario, comma-separated")
    ap.add_argument("--hz", type=float, default=10.0)
    ap.add_argument("--workloads", type=int, default=3)
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="harness-bench-report-"))
    rows_out = []
    try:
        print(f"{'minutes':>7} {'rows':>9} {'parquet MiB':>11} {'render s':>8} {'RSS MiB':>7} {'html KiB':>8} "
              f"{'png KiB':>7}")  # fmt: skip
        for i, minutes in enumerate(float(m) for m in args.minutes.split(",")):
            ns = argparse.Namespace(scenarios=1, workloads=args.workloads, hz=args.hz, minutes=minutes)
            make_run(root / f"m{i}", "base", i, ns, np.random.default_rng(i))
            run = next((root / f"m{i}").iterdir())
            samples = run / "samples.parquet"
            out = root / f"report-{i}"
            t = time.perf_counter()
            proc = subprocess.Popen(
                [sys.executable, "-m", "harness", "report", str(run), "-o", str(out / "report.html")],
                cwd=REPO,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            text = proc.stdout.read() if proc.stdout else ""
            _, status, usage = os.wait4(proc.pid, 0)
            wall = time.perf_counter() - t
            if os.waitstatus_to_exitcode(status) != 0:
                raise SystemExit(f"harness report failed:\n{text[-2000:]}")
            html = (out / "report.html").stat().st_size
            png = sum(p.stat().st_size for p in out.glob("*.png"))
            r = {
                "minutes": minutes,
                "rows": pq.read_metadata(samples).num_rows,
                "parquet_mib": round(samples.stat().st_size / 2**20, 2),
                "render_s": round(wall, 2),
                "peak_rss_mib": round(usage.ru_maxrss / 1024),
                "html_kib": round(html / 1024),
                "png_kib": round(png / 1024),
            }
            rows_out.append(r)
            print(f"{minutes:>7g} {r['rows']:>9,} {r['parquet_mib']:>11.2f} {r['render_s']:>8.2f} "
                  f"{r['peak_rss_mib']:>7} {r['html_kib']:>8} {r['png_kib']:>7}", flush=True)  # fmt: skip
        print(json.dumps(rows_out))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
