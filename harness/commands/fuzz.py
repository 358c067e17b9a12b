"""``harness fuzz``: random pods and kubelet profiles on the local cluster, compared with the model."""

from __future__ import annotations

import json
import signal
import sys
from pathlib import Path
from types import FrameType

import click

from harness.errors import EXIT_MISMATCH, EXIT_OK
from harness.fuzz.runner import FuzzOptions, FuzzReport, default_out_dir, run_fuzz
from harness.paths import results_dir


def _say(msg: str) -> None:
    click.echo(msg, err=True)


def summary_table(rep: FuzzReport) -> str:
    """One line per profile, then every difference with its reproducer."""
    d = rep.to_dict()
    lines = [
        f"fuzz seed {rep.seed}: {d['compared']}/{rep.pods_asked} pods compared on kubelet {rep.kubelet_version}, "
        f"{d['files_compared']} cgroup files, {d['oom_scores_compared']} oom_score_adj, "
        f"{d['differences']} differences, {d['host_deviations']} host deviations ({rep.seconds:.0f} s)",
        f"{'profile':<8} {'pods':>5} {'batches':>7} {'admitted':>8} {'rejected':>8} {'files':>6} {'oom':>5} {'diffs':>5}"
        "  allocatable model / node",
    ]
    for p in rep.profiles:
        rs = [r for r in rep.results if r.profile == p.index]
        adm = sum(1 for r in rs if r.observed and r.observed.admitted)
        rej = sum(1 for r in rs if r.observed and not r.observed.admitted)
        diffs = sum(len(r.differences) for r in rs) + sum(
            1 for x in rep.node_differences if x.profile == p.index
        )
        alloc = ", ".join(
            f"{k} {p.allocatable_model.get(k)} / {p.allocatable_node.get(k)}" for k in ("memory", "cpu")
        )
        lines.append(
            f"{p.index:<8} {len(rs):>5} {p.batches:>7} {adm:>8} {rej:>8} {sum(r.files for r in rs):>6} "
            f"{sum(r.oom_scores for r in rs):>5} {diffs:>5}  {alloc}"
        )
    for x in rep.differences:
        lines.append(f"DIFF {x.line()}" + (f"  -> {x.reproducer}" if x.reproducer else ""))
    devs = sorted({h.split(": ", 1)[1] for r in rep.results for h in r.host_deviations})
    for h in devs[:3]:
        lines.append(f"host deviation: {h}")
    lines.append(f"results in {rep.out_dir}")
    return "\n".join(lines)


@click.command("fuzz")
@click.option("--pods", type=click.IntRange(1, 10000), required=True, help="How many random pods.")
@click.option("--seed", type=int, required=True, help="Seed of the pods and profiles (same seed, same pods).")
@click.option(
    "--profiles",
    type=click.IntRange(1, 20),
    default=1,
    show_default=True,
    help="Random kubelet profiles (one kubelet restart each, plus one to restore its configuration).",
)
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False),
    help="Folder for fuzz.json, the profiles and the reproducers (default <results>/fuzz-<seed>-<time>).",
)
@click.option(
    "--max-batch",
    type=click.IntRange(1, 100),
    default=12,
    show_default=True,
    help="Pods on the node at once.",
)
@click.option("--json", "as_json", is_flag=True, help="Print fuzz.json on stdout instead of the table.")
def fuzz_cmd(pods: int, seed: int, profiles: int, out_dir: str | None, max_batch: int, as_json: bool) -> None:
    """Differential test against the real kubelet: random pods (QoS mixes, init containers and
    sidecars, priorities, odd quantities) under random kubelet profiles on the local cluster; per pod,
    admission, every cgroup file the model predicts and every container's oom_score_adj against the
    model. Each difference is written as a reproducer suite for `harness run SUITE --backend
    kubernetes`. Exit 0: no difference, 1: differences, 2: bad input, 3: the cluster failed.

    \b
    Example:
      harness fuzz --pods 8 --seed 1
      harness fuzz --pods 60 --seed 7 --profiles 2 --out /tmp/fuzz7
    """
    out = Path(out_dir) if out_dir else default_out_dir(seed, results_dir())

    def _term(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    old = signal.signal(signal.SIGTERM, _term)
    try:
        rep = run_fuzz(FuzzOptions(pods=pods, seed=seed, profiles=profiles, max_batch=max_batch), out, _say)
    finally:
        signal.signal(signal.SIGTERM, old)
    if as_json:
        json.dump(rep.to_dict(), sys.stdout, indent=2, default=str)
        sys.stdout.write("\n")
    else:
        click.echo(summary_table(rep))
    sys.exit(EXIT_MISMATCH if rep.differences else EXIT_OK)
