"""A node's worth of pods: one scenario of N pods (default 110) on the local cluster, and its overhead.

Writes a suite (``--suite-out``, default a temp file) with one scenario: ``N - 1`` Burstable pods
that each hold ``--hold`` (default 16Mi; 109 x 16Mi ≈ 1.7 GiB, near the eviction threshold of
profiles/cluster-default.yaml at ~2.04 GiB of pods' working set) and one BestEffort pod that leaks
8Mi/s past it: the kubelet evicts the leaker. N = 110 is the kubelet's default ``maxPods``
(KubeletConfiguration ``maxPods: 110``, k8s.io/kubelet/config/v1beta1 types.go); the harness pods
are the node's only pods (no system pods, hostNetwork).

The scenario has ``launch: parallel`` (``--launch serial``: one pod after the other, each
waited for): every pod is created, then the harness waits for them together, and at the timeout
they are deleted together.

Without ``--run`` it only writes and validates the suite and prints the model's prediction.
With ``--run`` it runs ``python -m harness run SUITE --backend kubernetes --json`` (needs the
local cluster: run it under the shared lock, see below), and prints the wall time split into

  setup     from the command's start to the first pod created (process start, readiness, the
            page-fault probe, the kubelet profile, the node's pressure check)
  start-up  first pod created -> last container Started (the pods' own start-up; inside the
            scenario's timeout, which runs from the first pod's creation)
  teardown  the timeout's end -> scenario_end (stopping the pods, deleting them, the tree)
  after     scenario_end -> exit (as-run prediction, classification, verdicts, tables)

and the per-scenario overhead, setup + teardown + after = wall - timeout: what the run costs
beyond the scenario's own time (start-up included in it)::

    flock /tmp/harness-shared.lock sh -c \\
        'python3 -m harness cluster status >/dev/null || python3 -m harness cluster up; \\
         python3 benchmarks/bench_pods.py --run'

Usage: ``python benchmarks/bench_pods.py [--pods 110] [--hold 16Mi] [--launch parallel|serial]
[--suite-out FILE] [--run]``
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from harness.config import load_suite  # noqa: E402


def suite_doc(pods: int, hold: str, launch: str = "parallel") -> dict[str, object]:
    workloads: list[dict[str, object]] = [
        {
            "name": f"hold-{i:03d}",
            "resources": {"requests": {"memory": "16Mi"}, "limits": {"memory": "64Mi"}},
            "leak": {"chunk": hold, "interval": "100ms", "max": hold},
        }
        for i in range(pods - 1)
    ]
    workloads.append(
        {
            "name": "leaker",
            "resources": {},
            "leak": {"chunk": "4Mi", "interval": "500ms", "startDelay": "20s"},
        }
    )
    return {
        "apiVersion": "harness/v1",
        "kind": "Suite",
        "name": "pods110",
        "description": f"{pods} pods on one node: {pods - 1} hold {hold} each, one leaks past the threshold.",
        "profile": str(REPO / "profiles" / "cluster-default.yaml"),
        "sampleHz": 10,
        "scenarios": [
            {
                "name": f"s-pods{pods}",
                "description": f"{pods} pods near the eviction threshold, one leaking: it is evicted.",
                "timeout": "180s",
                "backends": ["kubernetes"],
                **(
                    {"launch": launch} if launch != "serial" else {}
                ),  # serial: the default (older harness too)
                "workloads": workloads,
            }
        ],
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--pods", type=int, default=110)
    ap.add_argument("--hold", default="16Mi")
    ap.add_argument("--launch", choices=["parallel", "serial"], default="parallel")
    ap.add_argument("--suite-out", type=Path)
    ap.add_argument("--run", action="store_true", help="run it on the local cluster (under the lock)")
    args = ap.parse_args()
    out = args.suite_out or Path(tempfile.mkdtemp(prefix="harness-bench-pods-")) / "pods.yaml"
    out.write_text(yaml.safe_dump(suite_doc(args.pods, args.hold, args.launch), sort_keys=False))
    suite = load_suite(out)
    sc = suite.scenarios[0]
    print(
        f"suite {out}: scenario {sc.name}, {len(sc.workloads)} pods, timeout {sc.timeout_s:g} s, launch {sc.launch}"
    )
    if not args.run:
        return 0
    results = Path(tempfile.mkdtemp(prefix="harness-bench-pods-results-"))
    t = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "harness", "run", str(out), "--backend", "kubernetes", "--json",
         "--results", str(results)],
        cwd=REPO, capture_output=True, text=True,
    )  # fmt: skip
    wall = time.monotonic() - t
    run_dir = next(p for p in results.iterdir() if p.is_dir())
    ev = pd.read_parquet(run_dir / "events.parquet")
    verdicts = pd.read_parquet(run_dir / "verdicts.parquet")
    created = ev[(ev["source"] == "harness") & (ev["kind"] == "pod_created")]["t_mono"]
    started = ev[(ev["source"] == "kubelet") & (ev["kind"] == "Started")]["t_mono"]
    sc_start = ev[(ev["source"] == "harness") & (ev["kind"] == "scenario_start")]["t_mono"]
    sc_end = ev[(ev["source"] == "harness") & (ev["kind"] == "scenario_end")]["t_mono"]
    window = float(sc_end.max() - sc_start.min()) if len(sc_start) and len(sc_end) else float("nan")
    startup = float(started.max() - created.min()) if len(created) and len(started) else float("nan")
    setup = float(created.min() - t) if len(created) else float("nan")
    teardown = (
        float(sc_end.max() - (created.min() + sc.timeout_s)) if len(created) and len(sc_end) else float("nan")
    )
    after = float(t + wall - sc_end.max()) if len(sc_end) else float("nan")
    # the teardown's parts (events of the kubernetes backend): stopping the pods (grace 5 s, until
    # their processes are gone) and deleting what the API still has (grace 0)
    stopped = ev[(ev["source"] == "harness") & (ev["kind"] == "pods_stopped")]
    deleted = ev[(ev["source"] == "harness") & (ev["kind"] == "pods_deleted")]
    stop_s = float(stopped["stop_s"].max()) if len(stopped) and "stop_s" in stopped else float("nan")
    delete_s = float(deleted["delete_s"].max()) if len(deleted) and "delete_s" in deleted else float("nan")
    print(f"exit {proc.returncode}; run {run_dir.name}; {len(verdicts)} verdicts, "
          f"{int(verdicts['passed'].sum())} match; outcomes {verdicts['observed'].value_counts().to_dict()}")  # fmt: skip
    print(
        f"wall {wall:.1f} s; scenario_start -> scenario_end {window:.1f} s; timeout {sc.timeout_s:g} s; "
        f"setup {setup:.1f} s; start-up (first pod created -> last Started) {startup:.1f} s; "
        f"teardown {teardown:.1f} s (stop {stop_s:.1f} s, delete {delete_s:.1f} s); after {after:.1f} s"
    )
    print(f"overhead (setup + teardown + after = wall - timeout): {wall - sc.timeout_s:.1f} s")
    print(json.dumps({"wall_s": round(wall, 1), "window_s": round(window, 1), "startup_s": round(startup, 1),
                      "setup_s": round(setup, 1), "teardown_s": round(teardown, 1),
                      "stop_s": round(stop_s, 1), "delete_s": round(delete_s, 1), "after_s": round(after, 1),
                      "overhead_s": round(wall - sc.timeout_s, 1), "launch": sc.launch,
                      "exit": proc.returncode}))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
