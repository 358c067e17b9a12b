"""As-run predictions on a real kernel: the verdict is judged on the program's reported timeline.

A leak asked to allocate faster than any host can fault pages in (64Mi chunks with no interval)
is killed at its 1Gi limit whenever this host gets there. The plan puts the kill at t = 0; the
as-run prediction, built from the leak's own JSON lines (start, one line per chunk), must put it
where the kernel really did it, within a chunk's allocation time.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from .conftest import harness

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

SUITE = """\
apiVersion: harness/v1
kind: Suite
name: as-run
profile: {profile}
node:
  memoryCapacity: 2Gi
sampleHz: 10
scenarios:
  - name: too-fast
    timeout: 30s
    workloads:
      - name: leaker
        resources: {{requests: {{memory: 32Mi}}, limits: {{memory: 1Gi}}}}
        leak: {{chunk: 64Mi, interval: 0s}}
"""


def test_a_leak_faster_than_the_host_is_judged_on_its_real_pace(tmp_path: Path) -> None:
    repo = Path(__file__).resolve().parents[2]
    suite = tmp_path / "suite.yaml"
    suite.write_text(SUITE.format(profile=repo / "profiles" / "local.yaml"))
    results = tmp_path / "results"
    r = harness("run", str(suite), "--backend", "process", "--results", str(results))
    assert r.returncode == 0, r.stdout + r.stderr
    run = next(results.iterdir())
    p = pd.read_parquet(run / "predictions.parquet").iloc[0]
    v = pd.read_parquet(run / "verdicts.parquet").iloc[0]
    assert v.observed == "oom_killed" and v.passed, v.reasons
    assert p.basis == "as-run"
    assert p.planned_outcome == "oom_killed" and p.planned_earliest_s < 0.01  # every chunk at t = 0
    assert p.launch_s >= 0 and p.alloc_rate_bytes_per_s > 0
    # the as-run kill lands in the chunk the kernel killed the program in: at most one chunk's
    # allocation time (plus the kernel log's delivery) before the observed kill, never after it
    assert p.earliest_s <= v.observed_t_s <= p.earliest_s + p.max_chunk_s + 0.25, (p.to_dict(), v.to_dict())
