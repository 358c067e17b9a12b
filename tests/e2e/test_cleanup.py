"""Interrupted runs: SIGTERM stops and flushes; SIGKILL leaves debris that ``harness cleanup`` removes."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from harness.host.cgroups import cgroup_version, iter_pids, leftover_trees, memory_root, remove_tree
from harness.procs import alive, proc_start_time

from .conftest import REPO, harness, require_docker

pytestmark = [pytest.mark.e2e, pytest.mark.integration]


def _start(
    tmp_path: Path, backend: str, suite: str = "suites/local.yaml", scenario: str = "S4"
) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "harness",
            "run",
            suite,
            "--backend",
            backend,
            "--scenario",
            scenario,
            "--results",
            str(tmp_path),
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_for_workloads(tmp_path: Path, timeout: float = 60, min_pids: int = 3) -> list[int]:
    """Wait until the run has started workloads (pids inside its harness cgroup)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        runs = {d.name for d in tmp_path.iterdir() if d.is_dir()}
        for top in leftover_trees():
            if top.name not in runs:
                continue  # only this run's own tree: not a decoy, another run or a page-fault probe
            # the run-start page-fault probe and a scenario's warm-up are not workloads
            probes = {pid for d in [top / "hostperf", *top.glob("*/warmup")] for pid in iter_pids(d)}
            pids = sorted(set(iter_pids(top)) - probes)
            if len(pids) >= min_pids:
                return pids
        time.sleep(0.2)
    raise AssertionError("the run never started its workloads")


def test_sigterm_stops_workloads_and_marks_run_interrupted(tmp_path: Path) -> None:
    p = _start(tmp_path, "process")
    pids = _wait_for_workloads(tmp_path)
    time.sleep(1.0)
    p.send_signal(signal.SIGTERM)
    out, err = p.communicate(timeout=60)
    assert p.returncode == 130, out + err
    run = next(tmp_path.iterdir())
    meta = json.loads((run / "run.json").read_text())
    assert meta["status"] == "interrupted"
    assert (run / "events.parquet").is_file() and (run / "samples.parquet").is_file()
    assert not leftover_trees()
    assert not any(alive(pid) for pid in pids)


SUITES = {
    "process": ("suites/local.yaml", "S4"),
    "docker": ("suites/local.yaml", "S4"),
    "containerd": ("suites/local.yaml", "S4"),
    "kubernetes": ("suites/kubelet.yaml", "S3"),  # pods and a host workload (a cluster containerd task)
}
DECOY_ARGS = ["/leak", "--chunk=1048576", "--max=1048576", "--hold-ms=600000"]


class Decoys:
    """Things the run did not make, in the same places its own things live: a ``harness/other-*``
    cgroup with a process, a container in the project's Docker engine and a task in the project's
    containerd, both with the harness's own labels (only a ledger may say what is a run's)."""

    def __init__(self, tag: str) -> None:
        self.tag = tag
        self.cgroup, self.proc = _cgroup_with_sleeper(f"harness/other-{tag}")
        self.docker: Any = None
        self.docker_client: Any = None
        self.ctr_inst: Any = None
        self.docker_engine: Any = None

    def add_docker(self) -> None:
        import docker

        from harness.engines.docker import ENGINE_OWNER, ensure_docker
        from harness.images import image_name
        from harness.owned import add_user

        self.docker_engine = engine = ensure_docker()
        add_user(ENGINE_OWNER)  # the test uses the engine too: nobody may stop it under the decoy
        self.docker_client = docker.DockerClient(base_url=engine.url, timeout=60)
        self.docker = self.docker_client.containers.run(
            image_name("leak"),
            command=DECOY_ARGS[1:],
            detach=True,
            name=f"decoy-{self.tag}",
            network_mode="none",
            labels={"io.harness.managed": "true", "io.harness.run": "decoy"},
        )

    def add_containerd(self, tmp_path: Path) -> None:
        from harness.engines.containerd import ctr, default_instance, engine_owner
        from harness.images import LEAK_IMAGE
        from harness.launch.containerd.args import ctr_run_args
        from harness.owned import add_user

        self.ctr_inst = inst = default_instance()
        add_user(engine_owner(inst))
        args = ctr_run_args(
            LEAK_IMAGE,
            f"decoy-{self.tag}",
            DECOY_ARGS,
            cgroup=f"/decoy-{self.tag}",
            labels={"io.harness.managed": "true", "io.harness.run": "decoy"},
            log=tmp_path / "decoy.log",
            pidfile=tmp_path / "decoy.pid",
            runc_root=inst.runc_root,
            memory_limit=64 << 20,
        )
        ctr(inst, *args, namespace="harness", timeout=60)

    def assert_untouched(self) -> None:
        assert self.cgroup.is_dir(), "cleanup removed a cgroup no run made"
        assert self.proc.poll() is None, "cleanup killed a process no run started"
        if self.docker is not None:
            self.docker.reload()
            assert self.docker.status == "running", (
                f"cleanup touched a foreign container: {self.docker.status}"
            )
        if self.ctr_inst is not None:
            from harness.engines.containerd import ctr

            rows = ctr(self.ctr_inst, "tasks", "ls", namespace="harness").stdout.splitlines()[1:]
            assert any(r.split()[0] == f"decoy-{self.tag}" and r.split()[-1] == "RUNNING" for r in rows), rows

    def remove(self) -> None:
        self.proc.kill()
        self.proc.wait()
        remove_tree(f"harness/other-{self.tag}")
        if self.docker is not None:
            from harness.engines.docker import ENGINE_OWNER, stop_if_unused
            from harness.owned import remove_user

            self.docker.remove(force=True)
            self.docker_client.close()
            remove_user(ENGINE_OWNER)
            stop_if_unused(self.docker_engine)  # if this test started it and nobody else uses it
        if self.ctr_inst is not None:
            from harness.engines.containerd import ContainerdHandle, engine_owner, stop_if_unused
            from harness.launch.containerd.backend import remove_containers
            from harness.owned import remove_user
            from harness.procs import read_pid

            assert remove_containers(self.ctr_inst, "harness", [f"decoy-{self.tag}"]) == []
            remove_tree(f"decoy-{self.tag}")
            remove_user(engine_owner(self.ctr_inst))
            # the killed run started it on demand: its last user (this test) stops it
            stop_if_unused(ContainerdHandle(self.ctr_inst, pid=read_pid(self.ctr_inst.pidfile_path)))


def _run_things(backend: str, run_id: str) -> dict[str, list[str]]:
    """What of the run exists now: its cgroups (any hierarchy), containers, tasks, pods, ledger."""
    from harness.host.cgroups import hierarchies
    from harness.owned import OWNED_DIR

    out: dict[str, list[str]] = {
        "cgroups": [str(h / "harness" / run_id) for h in hierarchies() if (h / "harness" / run_id).exists()],
        "ledger": [str(p) for p in OWNED_DIR.glob(f"run-{run_id}.jsonl")],
    }
    if backend == "docker":
        import docker

        from harness.engines.docker import DEFAULT_RUN_DIR, SOCKET_NAME

        c = docker.DockerClient(base_url=f"unix://{DEFAULT_RUN_DIR / SOCKET_NAME}", timeout=60)
        out["containers"] = [
            x.name for x in c.containers.list(all=True, filters={"label": f"io.harness.run={run_id}"})
        ]
        c.close()
    if backend in ("containerd", "kubernetes"):
        from harness.cluster import Cluster
        from harness.cluster.runtime import instance
        from harness.engines.containerd import answers, ctr, default_instance
        from harness.launch.containerd.names import run_prefix

        inst = default_instance() if backend == "containerd" else instance(Cluster())
        if answers(inst):
            ids = ctr(inst, "containers", "ls", "-q", namespace="harness").stdout.split()
            out["containerd"] = [i for i in ids if i.startswith(run_prefix(run_id))]
    if backend == "kubernetes":
        from harness.cluster import Cluster

        pods = json.loads(Cluster().api_get("/api/v1/namespaces/harness/pods"))["items"]
        out["pods"] = [
            p["metadata"]["name"] for p in pods if run_id[-8:] in json.dumps(p["metadata"].get("labels"))
        ]
    return out


def _kubepods_limit() -> str:
    from harness.cluster import Cluster
    from harness.host.cgroups import cgroup_version, memory_root

    c = Cluster()
    v = cgroup_version(c.cgroup_root)
    f = "memory.limit_in_bytes" if v == 1 else "memory.max"
    return (memory_root(v, c.cgroup_root) / c.kubepods / f).read_text().strip()


@pytest.mark.parametrize("backend", ["process", "docker", "containerd", "kubernetes"])
def test_sigkill_at_a_random_point_then_cleanup_removes_the_run_and_nothing_else(
    tmp_path: Path, backend: str, request: pytest.FixtureRequest
) -> None:
    """SIGKILL the harness at a random moment of a scenario (seeded, printed), then ``harness
    cleanup``: nothing of the run is left (cgroups, processes, containers, tasks, pods, its
    ledger) and the decoys (a foreign cgroup, container, task) are untouched."""
    if backend == "docker":
        require_docker()
    if backend == "kubernetes" and os.environ.get("HARNESS_SKIP_KUBELET") == "1":
        pytest.skip("HARNESS_SKIP_KUBELET=1")
    if backend == "kubernetes":
        request.getfixturevalue("local_cluster")  # the suite starts what it needs
    seed = int(os.environ.get("HARNESS_FAULT_SEED", str(random.randrange(1 << 30))))
    delay = random.Random(seed).uniform(0.0, 4.0)
    print(f"fault seed {seed}: SIGKILL {delay:.2f} s after the workloads started")
    suite, scenario = SUITES[backend]
    decoys = Decoys(uuid.uuid4().hex[:8])
    kubepods_before = _kubepods_limit() if backend == "kubernetes" else None
    try:
        if backend == "docker":
            decoys.add_docker()
        p = _start(tmp_path, backend, suite, scenario)
        pids = _wait_for_workloads(tmp_path, timeout=180, min_pids=1 if backend == "kubernetes" else 3)
        if backend == "containerd":
            decoys.add_containerd(tmp_path)  # the leak image is imported by now
        time.sleep(delay)
        p.kill()  # SIGKILL: no chance to clean up
        p.communicate(timeout=30)
        run = next(d for d in tmp_path.iterdir() if d.is_dir() and (d / "run.json").exists())
        run_id = json.loads((run / "run.json").read_text())["run_id"]
        before = _run_things(backend, run_id)
        before_ledger = [Path(p).read_text() for p in before["ledger"]]
        print("left by the kill:", before)
        assert before["cgroups"] and before["ledger"], "SIGKILL should have left the run's cgroups and ledger"
        if backend == "docker":
            assert before["containers"], "SIGKILL should have left the run's containers"
        r = harness("cleanup")
        print(r.stdout, r.stderr)
        assert r.returncode == 0, r.stdout + r.stderr
        time.sleep(0.5)
        after = _run_things(backend, run_id)
        assert all(v == [] for v in after.values()), f"left after cleanup: {after}"
        assert not any(alive(pid) for pid in pids)
        if backend == "kubernetes":
            # S3's host workload lowered kubepods for the scenario (the run's ledger says so):
            # cleanup puts the killed run's limit back
            # (to its limit before the scenario, under the ceiling: S3's own kubelet profile stays
            # until the next run switches it, so not kubepods_before, the default profile's)
            (entry,) = [
                e
                for text in before_ledger
                for ln in text.splitlines()
                if (e := json.loads(ln)).get("kind") == "cgroup-limit"
            ]
            now = int(_kubepods_limit())
            print(f"kubepods: {kubepods_before} before the run, {entry} in the ledger, {now} after cleanup")
            assert abs(now - int(entry["before"])) < 4096 and now > int(entry["after"]), (entry, now)
        decoys.assert_untouched()
    finally:
        decoys.remove()


def _cgroup_with_sleeper(rel: str) -> tuple[Path, subprocess.Popen[bytes]]:
    """A memory cgroup ``rel`` (cgroup v1 memory hierarchy or v2) with a sleeping process inside."""
    d = memory_root(cgroup_version()) / rel
    d.mkdir(parents=True)
    p = subprocess.Popen(["sleep", "300"])
    (d / "cgroup.procs").write_text(str(p.pid))
    return d, p


def _dead_pid() -> tuple[int, int]:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    start = proc_start_time(p.pid) or 1
    p.wait()
    return p.pid, start


def test_cleanup_removes_only_what_a_dead_runs_ledger_names(tmp_path: Path) -> None:
    """A decoy ``harness/other-*`` cgroup (not made by a run: no ledger names it) and its process
    survive ``harness cleanup``; a dead run's cgroup (named in its ledger) and its process go."""
    tag = uuid.uuid4().hex[:8]
    owned = tmp_path / "owned"
    owned.mkdir()
    decoy, decoy_proc = _cgroup_with_sleeper(f"harness/other-{tag}")
    dead_cg, dead_proc = _cgroup_with_sleeper(f"harness/deadrun-{tag}")
    pid, start = _dead_pid()
    (owned / f"run-deadrun-{tag}.jsonl").write_text(
        json.dumps({"owner": f"run-deadrun-{tag}", "pid": pid, "start": start})
        + "\n"
        + json.dumps({"op": "add", "kind": "cgroup", "path": f"harness/deadrun-{tag}"})
        + "\n"
    )
    try:
        r = harness("cleanup", "--backend", "process", env={**os.environ, "HARNESS_OWNED_DIR": str(owned)})
        print(r.stdout, r.stderr)
        assert decoy.is_dir(), "cleanup removed a cgroup no run of the harness made"
        assert decoy_proc.poll() is None, "cleanup killed a process it does not own"
        assert r.returncode == 0, r.stdout + r.stderr
        assert (
            f"left alone (no ledger names it, not made by a harness run): cgroup harness/other-{tag}"
            in r.stdout
        )
        assert not dead_cg.exists()
        assert dead_proc.wait(timeout=10) == -signal.SIGKILL
        assert not list(owned.iterdir())  # the dead run's ledger is done
    finally:
        for p in (decoy_proc, dead_proc):
            p.kill()
            p.wait()
        remove_tree(f"harness/other-{tag}")
        remove_tree(f"harness/deadrun-{tag}")
