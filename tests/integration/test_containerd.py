"""The containerd engine and backend against real containerd daemons, real runc and real OOM kills.

* the harness instance (``containerd_engine``): idempotent start, config that matches this host;
* a private instance (its own root, state and socket in /var/tmp): start, run tasks, stop by pid
  without touching any other containerd on the host;
* a task OOM-killed at its memory limit: containerd's ``/tasks/oom`` and ``/tasks/exit`` events,
  the kernel log and the cgroup's oom_kill counter all agree;
* the backend places each workload of S4 at the model's cgroup with the model's limit and
  oom_score_adj, labels it, stops it, and its teardown leaves no task, container, snapshot or
  cgroup;
* cleanup of the ``harness`` namespace never touches ``k8s.io``.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
import time
import tomllib
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from harness.engines.containerd import (
    ContainerdInstance,
    alive,
    answers,
    ctr,
    default_instance,
    ensure_containerd,
    instance_shims,
    is_instance_daemon,
    stop,
)
from harness.errors import HarnessError
from harness.host.cgroups import CgroupTree, hierarchies, remove_tree
from harness.host.probes import probe_negative_oom_score_adj
from harness.images import LEAK_IMAGE, build_image, import_into_containerd, workload_binary
from harness.launch.containerd import (
    NAMESPACE,
    ContainerdBackend,
    CtrEvent,
    EventFollower,
    active_snapshots,
    cleanup_namespace,
    ctr_run_args,
    wall_to_mono,
)

from .conftest import Kmsg, MiB

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def oci_leak(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_image(
        workload_binary("leak"), LEAK_IMAGE, ["/leak"], tmp_path_factory.mktemp("oci") / "leak.tar", "oci"
    )


@pytest.fixture
def private_instance() -> Iterator[ContainerdInstance]:
    """A containerd of its own (CRI plugin on, as the cluster's), stopped by pid at the end."""
    d = Path(tempfile.mkdtemp(prefix="hctrd-", dir="/var/tmp"))
    inst = ContainerdInstance.under(d / "root", d / "run")
    h = ensure_containerd(inst)
    try:
        yield inst
    finally:
        failed = h.stop() if h.started_by_us else stop(inst)
        shutil.rmtree(d, ignore_errors=True)
        assert not failed, failed


@pytest.fixture
def cgroup_top(request: pytest.FixtureRequest) -> str:
    """A top-level cgroup name for tasks (runc creates it in every hierarchy); removed from all."""
    top = f"harness-test-{uuid.uuid4().hex[:10]}"
    request.addfinalizer(lambda: remove_tree(top))
    return top


def run_task(
    inst: ContainerdInstance,
    namespace: str,
    cid: str,
    cgroup: str,
    argv: list[str],
    work: Path,
    memory_limit: int | None = None,
) -> int:
    """``ctr run -d`` as the backend does; returns the task's pid."""
    pidfile = work / f"{cid}.pid"
    ctr(
        inst,
        *ctr_run_args(
            LEAK_IMAGE,
            cid,
            argv,
            cgroup=cgroup,
            labels={"io.harness.managed": "true"},
            log=work / f"{cid}.log",
            pidfile=pidfile,
            runc_root=inst.runc_root,
            memory_limit=memory_limit,
        ),
        namespace=namespace,
    )
    return int(pidfile.read_text())


def task_states(inst: ContainerdInstance, namespace: str) -> dict[str, str]:
    rows = [ln.split() for ln in ctr(inst, "tasks", "ls", namespace=namespace).stdout.splitlines()[1:]]
    return {r[0]: r[-1] for r in rows if r}


def containerd_pids() -> list[int]:
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if os.path.basename(os.readlink(d / "exe")) == "containerd":
                    out.append(int(d.name))
            except OSError:
                continue
    return out


# --------------------------------------------------------------------------- engine


def test_harness_instance_is_idempotent_and_configured_for_this_host(containerd_engine: Any) -> None:
    inst = default_instance()
    again = ensure_containerd(inst)
    assert not again.started_by_us
    assert again.pid == containerd_engine.pid and again.pid is not None
    assert is_instance_daemon(inst, again.pid)
    cfg = tomllib.loads(inst.config_path.read_text())
    cri = cfg["plugins"]["io.containerd.grpc.v1.cri"]
    # this host lacks CAP_SYS_RESOURCE: the CRI plugin must clamp negative values itself
    assert cri["restrict_oom_score_adj"] is (not probe_negative_oom_score_adj())
    assert cfg["grpc"]["address"] == str(inst.socket) == "/run/harness/containerd/containerd.sock"
    assert "Server:" in ctr(inst, "version").stdout


def test_private_instance_starts_runs_and_stops_without_touching_other_daemons(
    containerd_engine: Any, oci_leak: Path, cgroup_top: str, tmp_path: Path
) -> None:
    others = [p for p in containerd_pids()]
    d = Path(tempfile.mkdtemp(prefix="hctrd-", dir="/var/tmp"))
    inst = ContainerdInstance.under(d / "root", d / "run")
    try:
        h = ensure_containerd(inst)
        assert h.started_by_us and h.pid is not None and is_instance_daemon(inst, h.pid)
        assert inst.pidfile_path.read_text().strip() == str(h.pid)
        assert not ensure_containerd(inst).started_by_us  # answers: reused, not a second daemon
        import_into_containerd(inst.address, NAMESPACE, oci_leak)
        pid = run_task(inst, NAMESPACE, "held", f"/{cgroup_top}/held", ["/leak", f"--max={MiB}"], tmp_path)
        assert alive(pid)
        shims = instance_shims(inst)
        assert len(shims) == 1
        assert not set(shims) & set(instance_shims(default_instance()))
        assert stop(inst, proc=h._proc) == []
        assert not alive(h.pid) and not alive(pid) and not any(alive(s) for s in shims)
        assert not inst.socket.exists() and not inst.pidfile_path.exists()
        assert not [ln for ln in Path("/proc/self/mountinfo").read_text().splitlines() if str(d) in ln]
    finally:
        stop(inst)
        shutil.rmtree(d, ignore_errors=True)
    assert all(alive(p) for p in others), "another containerd was stopped"
    assert answers(default_instance())


def test_start_failure_quotes_the_log(tmp_path: Path) -> None:
    d = Path(tempfile.mkdtemp(prefix="hctrd-", dir="/var/tmp"))
    inst = ContainerdInstance.under(d / "root", d / "run", extra_toml="[this is not toml")
    try:
        with pytest.raises(HarnessError, match=r"containerd exited with code \d+; log .*containerd.log"):
            ensure_containerd(inst, timeout=20)
    finally:
        stop(inst)
        shutil.rmtree(d, ignore_errors=True)


# --------------------------------------------------------------------------- OOM evidence


def test_task_oom_kill_agrees_across_containerd_kmsg_and_counter(
    containerd_engine: Any, kmsg: Kmsg, cgroup_top: str, tmp_path: Path, full_oom_reports: float
) -> None:
    inst = default_instance()
    b = ContainerdBackend()
    b.image()  # imported once into the harness namespace
    cid = f"harness-test-{uuid.uuid4().hex[:8]}"
    events: list[CtrEvent] = []
    seen = threading.Event()

    def on_event(ev: CtrEvent) -> None:
        if ev.container_id == cid:
            events.append(ev)
            if ev.topic == "/tasks/exit":
                seen.set()

    follower = EventFollower(inst.address, NAMESPACE, on_event)
    follower.start()
    cg = f"/{cgroup_top}/leaker"
    try:
        pid = run_task(
            inst,
            NAMESPACE,
            cid,
            cg,
            ["/leak", f"--chunk={8 * MiB}", "--interval-ms=20"],
            tmp_path,
            memory_limit=64 * MiB,
        )
        assert seen.wait(30), "no /tasks/exit within 30 s"
        kill = kmsg.wait_for_oom_kill(pid)
        counter = Path(f"/sys/fs/cgroup/memory{cg}/memory.oom_control").read_text()
    finally:
        follower.stop()
        ctr(inst, "tasks", "delete", "--force", cid, namespace=NAMESPACE, check=False)
        ctr(inst, "containers", "delete", cid, namespace=NAMESPACE, check=False)
    topics = [e.topic for e in events]
    assert "/tasks/oom" in topics and topics.index("/tasks/oom") < topics.index("/tasks/exit")
    exit_ev = events[topics.index("/tasks/exit")]
    assert exit_ev.payload["exit_status"] == 137 and exit_ev.payload["pid"] == pid
    assert kill.scope == "memcg" and kill.kernel_format == "modern"
    assert kill.task_memcg == cg and kill.oom_memcg == cg
    assert "oom_kill 1" in counter.splitlines()
    # containerd's timestamp of the OOM and the kernel's record are the same moment (same clock base)
    oom_ev = events[topics.index("/tasks/oom")]
    assert abs(wall_to_mono(oom_ev.t_wall) - kill.ts_usec / 1e6) < 0.5
    assert not ctr(inst, "containers", "ls", "-q", namespace=NAMESPACE).stdout.split().count(cid)


# --------------------------------------------------------------------------- the backend


def test_backend_places_limits_labels_stops_and_tears_down_s4(containerd_engine: Any, tmp_path: Path) -> None:
    from harness.config.suite import load_suite
    from harness.launch.base import EventSink, ScenarioContext
    from harness.model.layout import node_layout

    suite = load_suite(Path(__file__).resolve().parents[2] / "suites" / "local.yaml")
    sc = suite.scenario("S4")
    neg = probe_negative_oom_score_adj()
    assert sc.node is not None
    sc.node.negative_oom_score_adj = neg
    layout = node_layout(sc)
    run_id = f"test-ctrd-{uuid.uuid4().hex[:8]}"
    tree = CgroupTree(f"harness/{run_id}/{sc.name}")
    sink = EventSink(None)
    ctx = ScenarioContext(run_id, sc, layout, tree, sink, tmp_path, negative_oom_score_adj=neg)
    inst = default_instance()
    b = ContainerdBackend()
    handles = {}
    try:
        b.prepare(ctx)
        for w in sc.workloads:
            handles[w.name] = b.launch(ctx, w, layout.workloads[w.name])
        for name, h in handles.items():
            wl = layout.workloads[name]
            pid = h.pids[0]
            mem_line = next(
                ln for ln in Path(f"/proc/{pid}/cgroup").read_text().splitlines() if ":memory:" in ln
            )
            assert mem_line.split(":", 2)[2] == "/" + tree.rel(wl.cgroup)
            assert int(Path(f"/proc/{pid}/oom_score_adj").read_text()) == h.applied_oom_score_adj
            if wl.memory_limit_bytes is not None:
                assert int((h.cgroup_abs / "memory.limit_in_bytes").read_text()) == wl.memory_limit_bytes
            info = ctr(inst, "containers", "info", h.container_id or "", namespace=NAMESPACE).stdout
            assert f'"io.harness.run": "{run_id}"' in info and f'"io.harness.workload": "{name}"' in info
        assert handles["bystander"].applied_oom_score_adj == 1000
        assert handles["leaker"].applied_oom_score_adj == 500
        g = handles["guaranteed"]
        assert g.asked_oom_score_adj == -997
        if not neg:
            assert g.applied_oom_score_adj == 0 and any("CAP_SYS_RESOURCE" in d for d in g.deviations)
        # the harness stops a workload: SIGTERM (the leak program exits 0 on it), reported by /tasks/exit
        b.stop(ctx, handles["leaker"], timeout=5)
        info = b.poll(ctx, handles["leaker"])
        assert info is not None and info.exit_code == 0 and info.stopped_by_harness
        assert b.poll(ctx, handles["bystander"]) is None  # still running
        assert [e for e in sink.events if e["source"] == "containerd" and e["kind"] == "exit"]
    finally:
        failed = b.teardown(ctx)
        b.close()
        remove_tree(f"harness/{run_id}")
    assert failed == []
    cids = {h.container_id for h in handles.values()}
    assert not cids & set(ctr(inst, "containers", "ls", "-q", namespace=NAMESPACE).stdout.split())
    assert not cids & set(task_states(inst, NAMESPACE))
    assert not cids & set(active_snapshots(inst, NAMESPACE))
    assert not [h / "harness" / run_id for h in hierarchies() if (h / "harness" / run_id).exists()]
    assert all(not alive(h.pids[0]) for h in handles.values())


def test_cleanup_of_the_harness_namespace_never_touches_k8s_io(
    private_instance: ContainerdInstance, oci_leak: Path, cgroup_top: str, tmp_path: Path
) -> None:
    inst = private_instance
    for ns in (NAMESPACE, "k8s.io"):
        import_into_containerd(inst.address, ns, oci_leak)
    hold = ["/leak", f"--max={MiB}"]
    run_task(inst, NAMESPACE, "harness-x-a", f"/{cgroup_top}/a", hold, tmp_path)
    run_task(
        inst, NAMESPACE, "harness-x-b", f"/{cgroup_top}/b", ["/leak", "--max=1", "--hold-ms=0"], tmp_path
    )
    kubelet_pid = run_task(inst, "k8s.io", "kubelet-owned", f"/{cgroup_top}/k", hold, tmp_path)
    # a snapshot whose container record is gone (a run killed between the two)
    rows = [r.split() for r in ctr(inst, "snapshots", "ls", namespace=NAMESPACE).stdout.splitlines()[1:]]
    parent = next(r[0] for r in rows if r and r[-1] == "Committed")
    ctr(inst, "snapshots", "prepare", "harness-orphan", parent, namespace=NAMESPACE)
    assert len(active_snapshots(inst, NAMESPACE)) == 3

    with pytest.raises(HarnessError, match="refused"):
        cleanup_namespace(inst, "k8s.io")
    assert cleanup_namespace(inst, NAMESPACE) == []

    assert task_states(inst, NAMESPACE) == {}
    assert ctr(inst, "containers", "ls", "-q", namespace=NAMESPACE).stdout.split() == []
    assert active_snapshots(inst, NAMESPACE) == []
    assert (
        LEAK_IMAGE in ctr(inst, "images", "ls", "-q", namespace=NAMESPACE).stdout.split()
    )  # the cache stays
    assert task_states(inst, "k8s.io") == {"kubelet-owned": "RUNNING"} and alive(kubelet_pid)
    assert ctr(inst, "containers", "ls", "-q", namespace="k8s.io").stdout.split() == ["kubelet-owned"]
    # with images: the namespace goes entirely
    ctr(inst, "tasks", "delete", "--force", "kubelet-owned", namespace="k8s.io")
    assert cleanup_namespace(inst, NAMESPACE, images=True) == []
    time.sleep(0.2)
    assert NAMESPACE not in ctr(inst, "namespaces", "ls", "-q").stdout.split()
    assert "k8s.io" in ctr(inst, "namespaces", "ls", "-q").stdout.split()


def test_host_workload_for_another_backend_without_prepare(containerd_engine: Any, tmp_path: Path) -> None:
    """S3's host workload as another backend (kubernetes) would use it: that backend builds the cgroup
    tree; ``launch`` alone brings up the engine, the image and the event follower."""
    from harness.config.suite import load_suite
    from harness.launch.base import EventSink, ScenarioContext
    from harness.model.layout import node_layout

    sc = load_suite(Path(__file__).resolve().parents[2] / "suites" / "local.yaml").scenario("S3")
    layout = node_layout(sc)
    run_id = f"test-ctrd-{uuid.uuid4().hex[:8]}"
    tree = CgroupTree(f"harness/{run_id}/{sc.name}")
    ctx = ScenarioContext(run_id, sc, layout, tree, EventSink(None), tmp_path)
    w = next(w for w in sc.workloads if w.placement == "host")
    b = ContainerdBackend()
    try:
        tree.create({"": layout.limits[""], layout.workloads[w.name].cgroup: None})
        h = b.launch(ctx, w, layout.workloads[w.name])
        assert b.follower is not None and b.follower.running
        assert h.cgroup == "system/hostleak" and h.pids[0] in tree.procs("system/hostleak")
        assert int(Path(f"/proc/{h.pids[0]}/oom_score_adj").read_text()) == 0  # the host's default
        assert int((h.cgroup_abs / "memory.limit_in_bytes").read_text()) >= 1 << 60  # no container limit
        b.stop(ctx, h, timeout=5)
        info = b.poll(ctx, h)
        assert info is not None and info.stopped_by_harness
    finally:
        failed = b.teardown(ctx)
        b.close()
        remove_tree(f"harness/{run_id}")
    assert failed == []
    assert h.container_id not in ctr(default_instance(), "containers", "ls", "-q", namespace=NAMESPACE).stdout
