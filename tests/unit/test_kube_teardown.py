"""Stopping and deleting a node's worth of pods: concurrent DELETEs, only of pods the API still has,
and a pod counted as stopped once its container's cgroup holds no process (pure logic; the real
path is tests/e2e/test_kubelet_parallel.py on the local cluster)."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from harness.launch.base import Handle
from harness.launch.kubernetes.backend import KubernetesBackend
from harness.launch.kubernetes.pods import DELETE_WORKERS, NAMESPACE, delete_each, delete_pods


class _Core:
    """The two CoreV1Api calls the deletes use, on a set of pod names; counts calls in flight."""

    def __init__(self, names: set[str], fail: frozenset[str] = frozenset(), delay: float = 0.0) -> None:
        self.pods = set(names)
        self.fail = fail
        self.delay = delay
        self.deleted: list[tuple[str, str, int, bool]] = []
        self.lists = 0
        self._lock = threading.Lock()
        self.in_flight = 0
        self.max_in_flight = 0

    def delete_namespaced_pod(
        self, name: str, ns: str, grace_period_seconds: int, _preload_content: bool = True
    ) -> None:
        with self._lock:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            time.sleep(self.delay)
            if name in self.fail:
                raise RuntimeError(f"500 for {name}")
            with self._lock:
                self.deleted.append((name, ns, grace_period_seconds, _preload_content))
                self.pods.discard(name)
        finally:
            with self._lock:
                self.in_flight -= 1

    def list_namespaced_pod(self, ns: str, _preload_content: bool = True) -> Any:
        self.lists += 1
        items = [{"metadata": {"name": n}} for n in sorted(self.pods)]
        return SimpleNamespace(data=json.dumps({"items": items}).encode())


def test_delete_each_sends_one_undecoded_delete_per_pod_several_at_once() -> None:
    names = [f"p{i:03d}" for i in range(40)]
    core = _Core(set(names), delay=0.02)
    delete_each(core, names, 5)
    assert sorted(n for n, *_ in core.deleted) == names
    assert {(ns, g, pre) for _, ns, g, pre in core.deleted} == {(NAMESPACE, 5, False)}
    assert 1 < core.max_in_flight <= DELETE_WORKERS


def test_delete_each_goes_on_past_a_failed_call() -> None:
    names = ["a", "b", "c", "d"]
    core = _Core(set(names), fail=frozenset({"b"}))
    delete_each(core, names, 0)
    assert sorted(n for n, *_ in core.deleted) == ["a", "c", "d"]


def test_delete_pods_deletes_only_what_the_api_has_and_reports_what_stays() -> None:
    core = _Core({"a", "c", "other"})
    assert delete_pods(core, ["a", "b", "c"], timeout=2) == set()
    assert sorted(n for n, *_ in core.deleted) == ["a", "c"]  # b was already gone: no call
    assert all(g == 0 for _, _, g, _ in core.deleted)
    assert core.pods == {"other"}  # a pod not asked for stays

    stuck = _Core({"a"}, fail=frozenset({"a"}))
    assert delete_pods(stuck, ["a"], timeout=0.5) == {"a"}


def test_delete_pods_of_nothing_asks_nothing() -> None:
    core = _Core({"a"})
    assert delete_pods(core, [], timeout=1) == set()
    assert core.lists == 0 and core.deleted == []


def _handle(tmp_path: Path, cid: str | None) -> Handle:
    return Handle(workload="w", backend="kubernetes", cgroup="c", cgroup_abs=tmp_path / "c", container_id=cid)


def test_a_pod_is_stopped_when_its_containers_cgroup_is_empty_or_gone(tmp_path: Path) -> None:
    cg = tmp_path / "c"
    cg.mkdir()
    (cg / "cgroup.procs").write_text("4242\n4243\n")
    assert not KubernetesBackend._processes_gone(_handle(tmp_path, "abc"))
    (cg / "cgroup.procs").write_text("")
    assert KubernetesBackend._processes_gone(_handle(tmp_path, "abc"))
    (cg / "cgroup.procs").unlink()
    cg.rmdir()
    assert KubernetesBackend._processes_gone(_handle(tmp_path, "abc"))


def test_a_pod_whose_container_never_ran_is_left_to_the_api(tmp_path: Path) -> None:
    # before the container runs, cgroup_abs is the model's path, which need not exist
    assert not KubernetesBackend._processes_gone(_handle(tmp_path, None))


def test_stopping_sends_sigterm_to_the_containers_processes_by_pid(tmp_path: Path) -> None:
    import subprocess
    import sys

    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        cg = tmp_path / "c"
        cg.mkdir()
        (cg / "cgroup.procs").write_text(f"{child.pid}\n")
        # a container that never ran: its cgroup path is the model's, nothing is signalled
        assert KubernetesBackend._term_processes(_handle(tmp_path, None)) == 0
        assert child.poll() is None
        assert KubernetesBackend._term_processes(_handle(tmp_path, "abc")) == 1
        assert child.wait(timeout=10) == -15  # SIGTERM, as the kubelet's graceful stop sends
        (cg / "cgroup.procs").write_text("")
        assert KubernetesBackend._term_processes(_handle(tmp_path, "abc")) == 0
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
