"""``process`` backend: the leak program as plain processes in the mirrored cgroup tree.

This reproduces the kernel half of every scenario without any container runtime:
the same cgroup paths and limits the kubelet would create, and the oom_score_adj the
kubelet would ask the runtime for (or the host's closest possible value).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time

from harness.config.suite import Workload
from harness.errors import HostError
from harness.host.cgroups import cgroup_version, memory_root
from harness.host.probes import probe_negative_oom_score_adj
from harness.launch.base import (
    Backend,
    Check,
    ExitInfo,
    Handle,
    ScenarioContext,
    applied_oom_score_adj,
    leak_binary,
)
from harness.model.layout import WorkloadLayout
from harness.owned import sweep_host


class ProcessBackend(Backend):
    name = "process"
    launch_slack_s = 0.5  # fork + exec into the cgroup
    observation_slack_s = 0.5

    def __init__(self) -> None:
        self._procs: dict[str, subprocess.Popen[bytes]] = {}

    def sanity_checks(self) -> list[Check]:
        checks = []
        b = leak_binary()
        checks.append(
            Check("leak binary", b.is_file() and os.access(b, os.X_OK), str(b), "run: make -C workloads")
        )
        try:
            v = cgroup_version()
            root = memory_root(v)
            writable = os.access(root, os.W_OK)
            checks.append(
                Check(
                    f"memory cgroup (v{v})", writable, str(root), "run as root on a host with cgroups mounted"
                )
            )
        except Exception as exc:
            checks.append(Check("memory cgroup", False, str(exc), "mount the memory cgroup controller"))
        neg = probe_negative_oom_score_adj()
        checks.append(
            Check(
                "negative oom_score_adj",
                True,
                "writable"
                if neg
                else "refused (no CAP_SYS_RESOURCE): Guaranteed/critical values are "
                "recorded as host deviations",
            )
        )
        return checks

    def launch(self, ctx: ScenarioContext, workload: Workload, layout: WorkloadLayout) -> Handle:
        binary = leak_binary()
        if not binary.is_file():
            raise HostError(f"leak binary {binary} not found: run 'make -C workloads' (or scripts/setup.sh)")
        asked = layout.oom_score_adj
        applied, deviation = applied_oom_score_adj(asked, ctx.negative_oom_score_adj)
        cg_procs = str(ctx.tree.abs(layout.cgroup) / "cgroup.procs")
        adj_bytes = str(applied).encode()
        args = [str(binary), *workload.leak.leak_args()]
        if workload.leak.mode == "pagecache":
            f = ctx.workdir / f"{workload.name}.dat"
            args.append(f"--file={f}")

        def preexec() -> None:  # runs in the child between fork and exec: syscalls only
            fd = os.open(cg_procs, os.O_WRONLY)
            os.write(fd, b"0")
            os.close(fd)
            fd = os.open("/proc/self/oom_score_adj", os.O_WRONLY)
            os.write(fd, adj_bytes)
            os.close(fd)
            os.setsid()

        h = Handle(
            workload=workload.name,
            backend=self.name,
            cgroup=layout.cgroup,
            cgroup_abs=ctx.tree.abs(layout.cgroup),
            asked_oom_score_adj=asked,
            applied_oom_score_adj=applied,
        )
        if deviation:
            h.deviations.append(deviation)
            ctx.events.add("harness", "host_deviation", workload=workload.name, detail=deviation)
        h.t_start_mono = time.monotonic()
        h.t_start_wall = time.time()
        p = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            preexec_fn=preexec,
            close_fds=True,
        )
        h.pids = [p.pid]
        self._procs[workload.name] = p
        ctx.events.add("harness", "launched", workload=workload.name, pid=p.pid, cgroup=str(h.cgroup_abs))
        threading.Thread(target=self._reader, args=(ctx, h, p), daemon=True).start()
        return h

    @staticmethod
    def _reader(ctx: ScenarioContext, h: Handle, p: subprocess.Popen[bytes]) -> None:
        assert p.stdout is not None
        for raw in p.stdout:
            ev = h.take_line(raw.decode(errors="replace"))
            if ev is None:
                continue
            if ev.get("pid") and ev["pid"] not in h.pids:
                h.pids.append(int(ev["pid"]))
            h.add_milestone(ctx.events, ev)

    def poll(self, ctx: ScenarioContext, handle: Handle) -> ExitInfo | None:
        if handle.exit:
            return handle.exit
        p = self._procs.get(handle.workload)
        if p is None:
            return None
        rc = p.poll()
        if rc is None:
            return None
        sig = -rc if rc < 0 else None
        handle.exit = ExitInfo(
            t_mono=time.monotonic(),
            t_wall=time.time(),
            exit_code=128 + sig if sig else rc,
            signal=sig,
            stopped_by_harness=handle.stop_requested,
        )
        stderr = p.stderr.read().decode(errors="replace").strip() if p.stderr else ""
        ctx.events.add(
            "runtime",
            "exit",
            workload=handle.workload,
            pid=p.pid,
            exit_code=handle.exit.exit_code,
            signal=sig,
            detail=stderr[-500:] or None,
        )
        return handle.exit

    def stop(self, ctx: ScenarioContext, handle: Handle, timeout: float = 5.0) -> None:
        p = self._procs.get(handle.workload)
        if p is None or p.poll() is not None:
            return
        handle.stop_requested = True
        try:
            os.killpg(p.pid, signal.SIGTERM)  # the leak program and its children, by group id
        except ProcessLookupError:
            return
        try:
            p.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()

    def teardown(self, ctx: ScenarioContext) -> list[str]:
        for h in list(self._procs.values()):
            if h.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(h.pid, signal.SIGKILL)
                h.wait()
        self._procs.clear()
        return ctx.tree.remove()

    @classmethod
    def cleanup_all(cls) -> list[str]:
        """The cgroups (and the processes in them), pids and scratch folders that runs no longer
        alive recorded in their ledgers (harness.owned); nothing else."""
        return sweep_host()


__all__ = ["ProcessBackend"]
