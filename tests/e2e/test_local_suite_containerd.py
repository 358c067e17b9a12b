"""The main job on the containerd backend: ``harness run suites/local.yaml --backend containerd``.

Real kernel OOM kills of real containerd tasks (the project's own containerd, started on demand).
Every verdict must match; for every OOM-killed workload the three independent sources - the
kernel log, the cgroup's oom_kill counter and containerd's ``/tasks/oom`` event - must agree;
and the run must leave no task, container, container snapshot or cgroup behind.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from harness.engines.containerd import ctr, default_instance, ensure_containerd
from harness.host.cgroups import hierarchies
from harness.launch.containerd import NAMESPACE, active_snapshots, run_prefix

from .conftest import harness
from .test_local_suite import _check_run, _only_run

pytestmark = [pytest.mark.e2e, pytest.mark.integration]


@pytest.fixture(autouse=True)
def _no_leftovers_after() -> Iterator[None]:
    """Replaces the e2e-wide check for this module: on a shared host other harness runs may be live
    (their cgroups are not leftovers, and ``harness cleanup`` would kill them). Each test here checks
    that its own run left nothing - tasks, containers, snapshots, cgroups - by its run id."""
    yield


def _by_scenario(events: pd.DataFrame) -> pd.DataFrame:
    """Each event with the scenario it happened in (from the scenario_start/scenario_end markers)."""
    current = None
    scenarios = []
    for _, e in events.iterrows():
        if e["source"] == "harness" and e["kind"] == "scenario_start":
            current = e["scenario"]
        scenarios.append(current)
        if e["source"] == "harness" and e["kind"] == "scenario_end":
            current = None
    out = events.copy()
    out["in_scenario"] = scenarios
    return out


def test_local_suite_containerd_backend(tmp_path: Path) -> None:
    r = harness("run", "suites/local.yaml", "--backend", "containerd", "--results", str(tmp_path))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "verdicts match" in r.stdout
    run = _only_run(tmp_path)
    verdicts = _check_run(run, "containerd")
    outcomes = dict(zip(verdicts["scenario"] + "/" + verdicts["workload"], verdicts["observed"], strict=True))
    assert outcomes["s1-container-limit/leaker"] == "oom_killed"
    assert outcomes["s4-kubepods-fast/bystander"] == "node_oom_killed"
    assert outcomes["s3-host-drains-node/hostleak"] == "node_oom_killed"  # the containerd host workload
    assert outcomes["s5-heap-cap/capped"] == "runtime_failed"

    events = _by_scenario(pd.read_parquet(run / "events.parquet"))
    launched = events[(events["source"] == "harness") & (events["kind"] == "launched")]
    pid_of = {(e["in_scenario"], e["workload"]): int(e["pid"]) for _, e in launched.iterrows()}
    cid_of = {(e["in_scenario"], e["workload"]): e["detail"] for _, e in launched.iterrows()}
    assert len(pid_of) == len(verdicts)
    ctrd = events[events["source"] == "containerd"]
    assert set(ctrd["kind"]) >= {"start", "oom", "exit", "delete"}
    assert ctrd["t_runtime_wall"].notna().all() and ctrd["t_runtime_mono"].notna().all()

    killed = verdicts[verdicts["observed"].isin(["oom_killed", "node_oom_killed"])]
    assert len(killed) == 5  # S1 leaker, S4 bystander, S3 besteffort + burstable + hostleak
    out = pd.read_parquet(run / "outcomes.parquet")
    for _, v in killed.iterrows():
        key = (v["scenario"], v["workload"])
        pid = pid_of[key]
        kernel = events[
            (events["source"] == "kmsg") & (events["kind"] == "oom_kill") & (events["pid"] == pid)
        ]
        assert len(kernel) == 1, key
        counter = events[
            (events["source"] == "memcg")
            & (events["cgroup"] == f"{key[0]}/{key[1]}")
            & (events["counter"] == "oom_kill")
        ]
        assert (counter["new"] - counter["old"]).sum() >= 1, key
        mine = ctrd[(ctrd["container_id"] == cid_of[key])]
        oom = mine[mine["kind"] == "oom"]
        exits = mine[mine["kind"] == "exit"]
        assert len(oom) >= 1 and len(exits) == 1, key
        assert int(exits["exit_code"].iloc[0]) == 137, key
        # containerd noticed the OOM no later than the exit, and within a second of the kernel's kill
        t_kill = float(kernel["t_kernel_mono"].iloc[0])
        assert oom["t_runtime_mono"].min() <= float(exits["t_runtime_mono"].iloc[0]), key
        assert abs(oom["t_runtime_mono"] - t_kill).min() < 1.0, key
        o = out[(out["scenario"] == key[0]) & (out["workload"] == key[1])].iloc[0]
        assert json.loads(o["sources"]) == ["kmsg", "memcg-counter", "containerd"], key
        assert json.loads(o["disagreements"]) == [], key

    # cgroup v1: the S4 survivors got /tasks/oom too (the kubepods OOM notifies every cgroup below
    # it); they completed, and the reason names containerd, the kernel sources and why
    meta = json.loads((run / "run.json").read_text())
    for name in ("guaranteed", "leaker"):
        v = verdicts[(verdicts["scenario"] == "s4-kubepods-fast") & (verdicts["workload"] == name)].iloc[0]
        assert v["observed"] == "completed"
        if meta["host"]["cgroupVersion"] == 1:
            (reason,) = json.loads(v["reasons"])
            assert "containerd (/tasks/oom event) reports an OOM" in reason
            assert "kmsg" in reason and "ancestor" in reason

    # nothing left: tasks, containers, container snapshots, cgroups
    inst = default_instance()
    prefix = run_prefix(meta["run_id"])
    engine = ensure_containerd(inst)  # the run stopped the engine it started: look with it running
    try:
        left = {
            what: [
                x
                for x in ctr(inst, what, "ls", "-q", namespace=NAMESPACE).stdout.split()
                if x.startswith(prefix)
            ]
            for what in ("containers", "tasks")
        }
        left["snapshots"] = [s for s in active_snapshots(inst, NAMESPACE) if s.startswith(prefix)]
    finally:
        engine.stop()
    assert left == {"containers": [], "tasks": [], "snapshots": []}
    assert not [h / "harness" / run.name for h in hierarchies() if (h / "harness" / run.name).exists()]


def _ctr_events_children(socket: str) -> list[int]:
    """Pids of ``ctr --address SOCKET events`` processes (the follower of a run)."""
    out = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            args = (d / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if args[:1] and args[0].endswith(b"ctr") and socket.encode() in args and b"events" in args:
            out.append(int(d.name))
    return out


def test_sigkill_leaves_tasks_that_the_containerd_cleanup_removes(tmp_path: Path) -> None:
    """A run killed with SIGKILL leaves running tasks (their shims outlive it); the containerd part of
    ``harness cleanup`` (namespace cleanup, the run's cgroups, the engine) removes every one.
    (``harness cleanup`` itself also removes every other harness run on the host: not run here.)"""
    import signal
    import subprocess
    import sys
    import time

    from harness.engines.containerd import answers, instance_shims, stop
    from harness.host.cgroups import remove_tree
    from harness.launch.containerd import cleanup_namespace

    from .conftest import REPO

    inst = default_instance()
    engine_was_up = answers(inst)
    HARNESS = [sys.executable, "-m", "harness"]
    p = subprocess.Popen(
        [
            *HARNESS,
            "run",
            "suites/local.yaml",
            "--backend",
            "containerd",
            "--scenario",
            "S4",
            "--results",
            str(tmp_path),
        ],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        running: list[str] = []
        while time.monotonic() < deadline and len(running) < 3:
            runs = [d for d in tmp_path.iterdir() if d.is_dir()]
            if runs and answers(inst):
                prefix = run_prefix(runs[0].name)
                rows = [
                    ln.split() for ln in ctr(inst, "tasks", "ls", namespace=NAMESPACE).stdout.splitlines()[1:]
                ]
                running = [r[0] for r in rows if r and r[0].startswith(prefix) and r[-1] == "RUNNING"]
            time.sleep(0.1)
        assert len(running) == 3, "the run never started its three tasks"
        p.send_signal(signal.SIGKILL)
        p.wait(timeout=10)
        time.sleep(0.5)
        # debris: the tasks live on without the harness; the events follower died with it
        rows = [ln.split() for ln in ctr(inst, "tasks", "ls", namespace=NAMESPACE).stdout.splitlines()[1:]]
        assert {r[0] for r in rows if r and r[-1] == "RUNNING"} >= set(running)
        assert _ctr_events_children(str(inst.socket)) == []
        run_id = next(d for d in tmp_path.iterdir() if d.is_dir()).name
        assert [h for h in hierarchies() if (h / "harness" / run_id).exists()]

        assert cleanup_namespace(inst) == []
        assert remove_tree(f"harness/{run_id}") == []
        assert ctr(inst, "tasks", "ls", "-q", namespace=NAMESPACE).stdout.split() == []
        assert ctr(inst, "containers", "ls", "-q", namespace=NAMESPACE).stdout.split() == []
        assert active_snapshots(inst, NAMESPACE) == []
        assert not [h for h in hierarchies() if (h / "harness" / run_id).exists()]
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        if not engine_was_up:  # the killed run had started it
            assert stop(inst) == []
            assert not answers(inst) and instance_shims(inst) == []
