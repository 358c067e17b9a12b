"""``docker`` backend: the leak image as Docker containers in the mirrored cgroup tree.

The project's own Docker engine (harness.engines.docker: Debian's docker.io with a
dedicated data root and socket) is started if it does not answer. Each container gets
the model's memory limit, the kubelet's oom_score_adj (clamped where the host refuses
negative values, recorded as a deviation), labels for cleanup, and a cgroup parent that
places it at the pod's path in the harness tree. Docker's ``oom`` and ``die`` events
are recorded as one more independent source.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import threading
import time
from pathlib import Path
from typing import Any

from harness import __version__
from harness.config.suite import Workload
from harness.engines.docker import (
    DEFAULT_RUN_DIR,
    DEFAULT_STATE_DIR,
    ENGINE_OWNER,
    SOCKET_NAME,
    DockerEngine,
    ensure_docker,
    ping,
    stop_if_unused,
)
from harness.errors import HostError
from harness.host.cgroups import memory_root
from harness.images import build_image, image_name, import_into_docker, workload_binary
from harness.launch.base import (
    LABEL,
    LABEL_RUN,
    LABEL_WORKLOAD,
    Backend,
    Check,
    ExitInfo,
    Handle,
    KubeletStart,
    ScenarioContext,
    applied_oom_score_adj,
)
from harness.model.layout import WorkloadLayout
from harness.owned import add_user, remove_user, run_ledger, sweep, sweep_host

IMAGE_CACHE = Path(os.environ.get("HARNESS_IMAGE_CACHE", "/var/lib/harness/images"))


class DockerBackend(Backend):
    name = "docker"
    launch_slack_s = 2.0  # container create + start through the engine
    observation_slack_s = 1.0  # oom/die events and State.OOMKilled arrive within ~1 s

    def __init__(self) -> None:
        self.engine: Any = None
        self.client: Any = None
        self._containers: dict[str, Any] = {}
        self._event_stream: Any = None

    # -- engine and image
    def _connect(self) -> Any:
        if self.client is None:
            self.engine = ensure_docker(on_demand_start=True)
            add_user(ENGINE_OWNER)
            self.client = self.engine.client()
        return self.client

    def image(self) -> str:

        client = self._connect()
        name = image_name("leak")
        try:
            client.images.get(name)
            return name
        except Exception:
            pass
        IMAGE_CACHE.mkdir(parents=True, exist_ok=True)
        tar = build_image(
            workload_binary("leak"), name, ["/leak"], IMAGE_CACHE / f"leak-{__version__}.docker.tar", "docker"
        )
        import_into_docker(client, tar)
        return name

    def versions(self) -> dict[str, Any]:
        try:
            v = self._connect().version()
            return {
                "docker": v.get("Version"),
                "api": v.get("ApiVersion"),
                "containerd": next(
                    (c.get("Version") for c in v.get("Components", []) if c.get("Name") == "containerd"), None
                ),
            }
        except Exception as exc:
            return {"docker": None, "error": str(exc)}

    def sanity_checks(self) -> list[Check]:

        checks = [
            Check(
                "dockerd binary",
                shutil.which("dockerd", path="/usr/sbin:/usr/bin:/sbin:/bin") is not None,
                "Debian package docker.io",
                "run scripts/setup.sh (apt-get install docker.io)",
            )
        ]
        if not checks[0].ok:
            return checks
        try:
            client = self._connect()
            info = client.info()
            driver = info.get("CgroupDriver")
            checks.append(Check("engine", True, f"Docker {info.get('ServerVersion')} on {self.engine.url}"))
            checks.append(
                Check(
                    "cgroup driver",
                    driver == "cgroupfs",
                    f"{driver}",
                    "the harness places containers with cgroupfs paths",
                )
            )
            checks.append(Check("leak image", bool(self.image()), "registry.local/harness/leak"))
        except Exception as exc:
            checks.append(
                Check(
                    "engine",
                    False,
                    str(exc).splitlines()[0],
                    "see the dockerd log under /var/lib/harness/docker",
                )
            )
        return checks

    # -- scenario
    def prepare(self, ctx: ScenarioContext) -> KubeletStart | None:
        self._connect()
        self._image = self.image()
        super().prepare(ctx)
        self._start_events(ctx)
        return None

    def _start_events(self, ctx: ScenarioContext) -> None:
        stream = self.client.events(
            decode=True, filters={"label": f"{LABEL_RUN}={ctx.run_id}", "type": "container"}
        )
        self._event_stream = stream

        def pump() -> None:
            with contextlib.suppress(Exception):
                for ev in stream:
                    action = ev.get("Action") or ev.get("status")
                    if action not in ("oom", "die", "kill", "start"):
                        continue
                    attrs = (ev.get("Actor") or {}).get("Attributes") or {}
                    ctx.events.add(
                        "docker",
                        action,
                        workload=attrs.get(LABEL_WORKLOAD),
                        exit_code=int(attrs["exitCode"]) if "exitCode" in attrs else None,
                        detail=json.dumps({"time_nano": ev.get("timeNano"), "signal": attrs.get("signal")}),
                    )

        threading.Thread(target=pump, daemon=True).start()

    def _parent(self, ctx: ScenarioContext, layout: WorkloadLayout) -> str:
        parent = layout.pod_cgroup if layout.pod_cgroup else layout.cgroup.rsplit("/", 1)[0]
        return "/" + ctx.tree.rel(parent)

    def launch(self, ctx: ScenarioContext, workload: Workload, layout: WorkloadLayout) -> Handle:
        asked = layout.oom_score_adj
        applied, deviation = applied_oom_score_adj(asked, ctx.negative_oom_score_adj)
        args = workload.leak.leak_args()
        if workload.leak.mode == "pagecache":
            args.append(f"--file=/{workload.name}.dat")
        parent = self._parent(ctx, layout)
        limit = layout.memory_limit_bytes
        name = f"harness-{ctx.run_id[-4:]}-{ctx.scenario.name}-{workload.name}"[:63]
        h = Handle(
            workload=workload.name,
            backend=self.name,
            cgroup=layout.cgroup,
            cgroup_abs=Path("/"),
            asked_oom_score_adj=asked,
            applied_oom_score_adj=applied,
        )
        if deviation:
            h.deviations.append(deviation)
            ctx.events.add("harness", "host_deviation", workload=workload.name, detail=deviation)
        kwargs: dict[str, Any] = dict(
            command=args,
            detach=True,
            name=name,
            cgroup_parent=parent,
            network_mode="none",
            oom_score_adj=applied,
            labels={
                LABEL: "true",
                LABEL_RUN: ctx.run_id,
                LABEL_WORKLOAD: workload.name,
                "io.harness.scenario": ctx.scenario.name,
            },
        )
        if limit is not None and workload.placement != "host":
            kwargs["mem_limit"] = limit
            # memory+swap: no swap (the kubelet's NoSwap), or the model's LimitedSwap share on v2
            extra = layout.swap_max_bytes if ctx.tree.version == 2 and layout.swap_max_bytes else 0
            kwargs["memswap_limit"] = limit + extra
        run_ledger(ctx.run_id).add(
            "docker-container", socket=str(DEFAULT_RUN_DIR / SOCKET_NAME), name=name, run=ctx.run_id
        )
        h.t_start_mono = time.monotonic()
        h.t_start_wall = time.time()
        try:
            c = self.client.containers.run(self._image, **kwargs)
        except Exception as exc:
            msg = str(exc)
            if "final child's PID from pipe" in msg:
                msg += " (runc could not set oom_score_adj: the host lacks CAP_SYS_RESOURCE)"
            raise HostError(f"docker could not start {workload.name}: {msg}") from None
        c.reload()
        h.container_id = c.id
        pid = int(c.attrs["State"].get("Pid") or 0)
        h.pids = [pid] if pid else []

        h.cgroup_abs = memory_root(ctx.tree.version) / parent.lstrip("/") / c.id
        self._containers[workload.name] = c
        ctx.events.add(
            "harness", "launched", workload=workload.name, pid=pid, cgroup=str(h.cgroup_abs), detail=c.id
        )
        threading.Thread(target=self._reader, args=(ctx, h, c), daemon=True).start()
        return h

    @staticmethod
    def _reader(ctx: ScenarioContext, h: Handle, c: Any) -> None:
        """The container's stdout: the leak program's lines, its milestones as run events (as every
        backend reports them)."""
        buf = b""
        with contextlib.suppress(Exception):
            for chunk in c.logs(stream=True, follow=True, stdout=True, stderr=False):
                buf += chunk
                while b"\n" in buf:
                    line, buf = buf.split(b"\n", 1)
                    ev = h.take_line(line.decode(errors="replace"))
                    if ev is not None:
                        h.add_milestone(ctx.events, ev, pid=h.pids[0] if h.pids else None)

    def poll(self, ctx: ScenarioContext, handle: Handle) -> ExitInfo | None:
        if handle.exit:
            return handle.exit
        c = self._containers.get(handle.workload)
        if c is None:
            return None
        try:
            c.reload()
        except Exception:
            return None
        st = c.attrs["State"]
        if st.get("Status") not in ("exited", "dead"):
            return None
        code = int(st.get("ExitCode", -1))
        handle.exit = ExitInfo(
            t_mono=time.monotonic(),
            t_wall=time.time(),
            exit_code=code,
            signal=code - 128 if code > 128 else None,
            runtime_oom_killed=bool(st.get("OOMKilled")),
            stopped_by_harness=handle.stop_requested,
        )
        ctx.events.add(
            "runtime",
            "exit",
            workload=handle.workload,
            pid=handle.pids[0] if handle.pids else None,
            exit_code=code,
            detail=json.dumps({"OOMKilled": st.get("OOMKilled"), "FinishedAt": st.get("FinishedAt")}),
        )
        return handle.exit

    def stop(self, ctx: ScenarioContext, handle: Handle, timeout: float = 5.0) -> None:
        c = self._containers.get(handle.workload)
        if c is None:
            return
        handle.stop_requested = True
        with contextlib.suppress(Exception):
            c.stop(timeout=int(timeout))

    def teardown(self, ctx: ScenarioContext) -> list[str]:
        failed = []
        led = run_ledger(ctx.run_id)
        for name, c in list(self._containers.items()):
            try:
                c.remove(force=True)
            except Exception as exc:
                if "No such container" not in str(exc):
                    failed.append(f"container {name}: {exc}")
                    continue
            led.release(
                "docker-container", socket=str(DEFAULT_RUN_DIR / SOCKET_NAME), name=c.name, run=ctx.run_id
            )
        self._containers.clear()
        if self._event_stream is not None:
            with contextlib.suppress(Exception):
                self._event_stream.close()
            self._event_stream = None
        return failed + ctx.tree.remove()

    def health(self) -> list[str]:
        if self.engine is None or ping(self.engine.socket):
            return []
        return [f"the Docker engine does not answer on {self.engine.socket} (log {self.engine.log_path})"]

    def close(self) -> None:
        """This run stops using the engine; the last user of an engine started on demand stops it
        (another run's containers in the shared engine are never stopped by this run)."""
        if self.engine is not None:
            remove_user(ENGINE_OWNER)
            stop_if_unused(self.engine)

    @classmethod
    def cleanup_all(cls) -> list[str]:
        """Remove the containers that runs no longer alive recorded in their ledgers (by name, and
        only while the container carries that run's label), then their cgroups; a foreign
        container or cgroup is never touched. The engine stays (``harness.engines.docker`` stops it
        when its last user is gone)."""
        clients: dict[str, Any] = {}

        def remove(e: dict[str, Any]) -> str | None:
            sock = Path(str(e.get("socket")))
            if str(sock) not in clients:
                if not ping(sock):
                    return None  # the engine is gone, and its containers with it (cgroups follow)
                # lazy: the Docker SDK loads only when the Docker engine is used
                import docker

                clients[str(sock)] = docker.DockerClient(base_url=f"unix://{sock}", timeout=60)
            client = clients[str(sock)]
            try:
                c = client.containers.get(str(e.get("name")))
            except Exception as exc:
                return (
                    None
                    if "No such container" in str(exc) or "404" in str(exc)
                    else f"container {e.get('name')}: {exc}"
                )
            if c.labels.get(LABEL_RUN) != e.get("run"):
                return None  # the name now belongs to something else: not ours
            try:
                c.remove(force=True)
            except Exception as exc:
                return f"container {c.name}: {exc}"
            return None

        try:
            failed = sweep({"docker-container": remove})
            if not failed:
                failed += _stop_idle_engine()
        finally:
            for c in clients.values():
                with contextlib.suppress(Exception):
                    c.close()
        return failed + sweep_host()


def _stop_idle_engine() -> list[str]:
    """An engine a killed run started on demand, with no user and no container left, is stopped."""
    sock = DEFAULT_RUN_DIR / SOCKET_NAME
    if not ping(sock):
        return []
    engine = DockerEngine(socket=sock, state_dir=DEFAULT_STATE_DIR, run_dir=DEFAULT_RUN_DIR)
    try:
        client = engine.client(timeout=30)
        try:
            if client.containers.list(all=True):
                return []  # somebody's containers (not ours, or they would be gone): leave it
        finally:
            client.close()
        stop_if_unused(engine)
    except Exception as exc:
        return [f"docker engine: {exc}"]
    return []
