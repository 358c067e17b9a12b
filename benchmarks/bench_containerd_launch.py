"""Start latency of one containerd task: ``ctr run -d`` (a subprocess) vs containerd's gRPC API from Python.

Both paths start the leak image in a private containerd instance (a temporary root; started and
stopped by this script, by pid) with what the ``containerd`` backend needs: a cgroup path, a
memory limit, a log file, labels. Per task it measures, from the moment the launch starts:

* ``started``: the launch call returned (ctr exited / the gRPC ``Tasks.Start`` returned);
* ``program``: the leak program's first JSON line (its own ``CLOCK_MONOTONIC`` stamp);
* for ``ctr``: how long the program ran before the harness wrote its ``oom_score_adj``
  (``ctr`` 1.6 has no flag for it; the gRPC path puts it in the OCI spec, so it is set by runc
  before the program starts).

The gRPC path needs the ``containerd`` PyPI package (generated stubs, last release 1.5.3 of
2021-09) with grpcio; it is not a project dependency. To measure it::

    pip install --target /tmp/pyctrd containerd==1.5.3
    python benchmarks/bench_containerd_launch.py --pyclient-path /tmp/pyctrd

(its generated code predates protobuf 4, so the script sets
``PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION=python``). Without it only ``ctr`` is measured.

Usage: ``python benchmarks/bench_containerd_launch.py [-n 20] [--pyclient-path DIR]`` (root).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness.engines.containerd import ContainerdInstance, ctr, ensure_containerd
from harness.host.cgroups import memory_root, remove_tree
from harness.images import LEAK_IMAGE, build_image, import_into_containerd, workload_binary
from harness.launch.containerd import (
    NAMESPACE,
    ctr_run_args,
    read_oom_score_adj,
    write_oom_score_adj,
)

MiB = 1 << 20
LEAK_ARGS = ["/leak", f"--chunk={MiB}", "--interval-ms=10", f"--max={4 * MiB}"]
OOM_SCORE_ADJ = 500


def first_line(log: Path, timeout: float = 10.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            for line in log.read_text().splitlines():
                if line.startswith("{"):
                    return dict(json.loads(line))
        except FileNotFoundError:
            pass
        time.sleep(0.0005)
    raise RuntimeError(f"no output in {log} within {timeout}s")


def wait_gone(pid: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        time.sleep(0.005)


# --------------------------------------------------------------------------- ctr


def launch_ctr(inst: ContainerdInstance, work: Path, i: int, cg: str) -> dict[str, float]:
    cid = f"bench-ctr-{i}"
    log, pidfile = work / f"{cid}.log", work / f"{cid}.pid"
    args = ctr_run_args(
        LEAK_IMAGE,
        cid,
        LEAK_ARGS,
        cgroup=cg,
        labels={"io.harness.managed": "true"},
        log=log,
        pidfile=pidfile,
        runc_root=inst.runc_root,
        memory_limit=64 * MiB,
    )
    t0 = time.monotonic()
    ctr(inst, *args, namespace=NAMESPACE)
    t_started = time.monotonic()
    pid = int(pidfile.read_text())
    write_oom_score_adj([pid], OOM_SCORE_ADJ)
    t_adj = time.monotonic()
    assert read_oom_score_adj(pid) == OOM_SCORE_ADJ
    prog = first_line(log)["mono_ns"] / 1e9
    ctr(inst, "tasks", "kill", "--signal", "SIGKILL", cid, namespace=NAMESPACE)
    wait_gone(pid)
    ctr(inst, "tasks", "delete", cid, namespace=NAMESPACE, check=False)
    ctr(inst, "containers", "delete", cid, namespace=NAMESPACE)
    return {"started": t_started - t0, "program": prog - t0, "adj_after_program": t_adj - prog}


# --------------------------------------------------------------------------- gRPC (pycontainerd)


class GrpcClient:
    """The minimum of containerd's Go client, over the generated stubs of the ``containerd`` package."""

    SPEC_TYPE = "types.containerd.io/opencontainers/runtime-spec/1/Spec"
    RUNC_OPTIONS_TYPE = "containerd.runc.v1.Options"

    def __init__(self, inst: ContainerdInstance) -> None:
        import grpc
        from containerd.services.containers.v1 import containers_pb2, containers_pb2_grpc
        from containerd.services.content.v1 import content_pb2, content_pb2_grpc
        from containerd.services.images.v1 import images_pb2, images_pb2_grpc
        from containerd.services.leases.v1 import leases_pb2, leases_pb2_grpc
        from containerd.services.snapshots.v1 import snapshots_pb2, snapshots_pb2_grpc
        from containerd.services.tasks.v1 import tasks_pb2, tasks_pb2_grpc

        self.pb = {
            "containers": containers_pb2,
            "content": content_pb2,
            "images": images_pb2,
            "leases": leases_pb2,
            "snapshots": snapshots_pb2,
            "tasks": tasks_pb2,
        }
        ch = grpc.insecure_channel(f"unix://{inst.socket}")
        self.containers = containers_pb2_grpc.ContainersStub(ch)
        self.content = content_pb2_grpc.ContentStub(ch)
        self.images = images_pb2_grpc.ImagesStub(ch)
        self.leases = leases_pb2_grpc.LeasesStub(ch)
        self.snapshots = snapshots_pb2_grpc.SnapshotsStub(ch)
        self.tasks = tasks_pb2_grpc.TasksStub(ch)
        self.md = (("containerd-namespace", NAMESPACE),)
        self.inst = inst
        self.chain_id = self._chain_id(LEAK_IMAGE)
        self.base_spec = json.loads(os.popen("ctr oci spec").read())

    def _read(self, digest: str) -> bytes:
        req = self.pb["content"].ReadContentRequest(digest=digest)
        return b"".join(r.data for r in self.content.Read(req, metadata=self.md))

    def _chain_id(self, ref: str) -> str:
        import hashlib

        img = self.images.Get(self.pb["images"].GetImageRequest(name=ref), metadata=self.md).image
        manifest = json.loads(self._read(img.target.digest))
        if "manifests" in manifest:  # an index: the first manifest
            manifest = json.loads(self._read(manifest["manifests"][0]["digest"]))
        config = json.loads(self._read(manifest["config"]["digest"]))
        chain = ""
        for diff in config["rootfs"]["diff_ids"]:
            chain = diff if not chain else "sha256:" + hashlib.sha256(f"{chain} {diff}".encode()).hexdigest()
        return chain

    def _runc_options(self) -> bytes:
        root = str(self.inst.runc_root).encode()
        return b"\x3a" + bytes([len(root)]) + root  # field 7 (root), length-delimited

    def launch(self, work: Path, i: int, cg: str) -> dict[str, float]:
        from google.protobuf import any_pb2

        pb = self.pb
        cid = f"bench-grpc-{i}"
        log = work / f"{cid}.log"
        spec = json.loads(json.dumps(self.base_spec))
        spec["process"].update(args=LEAK_ARGS, env=["PATH=/"], cwd="/", oomScoreAdj=OOM_SCORE_ADJ)
        spec["linux"]["cgroupsPath"] = cg
        spec["linux"].setdefault("resources", {})["memory"] = {"limit": 64 * MiB}
        spec["mounts"].append(
            {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup", "options": ["ro"]}
        )
        t0 = time.monotonic()
        # as the Go client: a lease keeps the new snapshot from the garbage collector until the
        # container record references it (without one, a GC between the two loses the snapshot)
        lease = self.leases.Create(pb["leases"].CreateRequest(id=f"{cid}-lease"), metadata=self.md).lease.id
        leased = (*self.md, ("containerd-lease", lease))
        mounts = self.snapshots.Prepare(
            pb["snapshots"].PrepareSnapshotRequest(snapshotter="overlayfs", key=cid, parent=self.chain_id),
            metadata=leased,
        ).mounts
        c = pb["containers"].Container(
            id=cid,
            image=LEAK_IMAGE,
            labels={"io.harness.managed": "true"},
            runtime=pb["containers"].Container.Runtime(
                name="io.containerd.runc.v2",
                options=any_pb2.Any(type_url=self.RUNC_OPTIONS_TYPE, value=self._runc_options()),
            ),
            spec=any_pb2.Any(type_url=self.SPEC_TYPE, value=json.dumps(spec).encode()),
            snapshotter="overlayfs",
            snapshot_key=cid,
        )
        self.containers.Create(pb["containers"].CreateContainerRequest(container=c), metadata=leased)
        self.leases.Delete(pb["leases"].DeleteRequest(id=lease), metadata=self.md)
        r = self.tasks.Create(
            pb["tasks"].CreateTaskRequest(
                container_id=cid, rootfs=mounts, stdout=f"file://{log}", stderr=f"file://{log}"
            ),
            metadata=self.md,
        )
        self.tasks.Start(pb["tasks"].StartRequest(container_id=cid), metadata=self.md)
        t_started = time.monotonic()
        assert read_oom_score_adj(r.pid) == OOM_SCORE_ADJ
        prog = first_line(log)["mono_ns"] / 1e9
        self.tasks.Kill(pb["tasks"].KillRequest(container_id=cid, signal=9), metadata=self.md)
        wait_gone(r.pid)
        time.sleep(0.05)
        self.tasks.Delete(pb["tasks"].DeleteTaskRequest(container_id=cid), metadata=self.md)
        self.containers.Delete(pb["containers"].DeleteContainerRequest(id=cid), metadata=self.md)
        try:  # usually already collected by the GC once its container is gone
            self.snapshots.Remove(
                pb["snapshots"].RemoveSnapshotRequest(snapshotter="overlayfs", key=cid), metadata=self.md
            )
        except Exception as exc:
            if "not found" not in str(exc):
                raise
        return {"started": t_started - t0, "program": prog - t0, "adj_after_program": 0.0}


# --------------------------------------------------------------------------- report


def summary(name: str, rows: list[dict[str, float]]) -> None:
    for key, label in (
        ("started", "launch call -> task started"),
        ("program", "launch call -> program's first line"),
        ("adj_after_program", "program ran before oom_score_adj set"),
    ):
        v = sorted(r[key] * 1000 for r in rows)
        p90 = v[min(len(v) - 1, int(round(0.9 * (len(v) - 1))))]
        print(
            f"  {name:<5} {label:<38} median {statistics.median(v):7.2f} ms  p90 {p90:7.2f} ms  "
            f"min {v[0]:7.2f}  max {v[-1]:7.2f}  (n={len(v)})"
        )


def run(n: int, method: str, fn: Callable[[int], dict[str, float]]) -> list[dict[str, float]]:
    fn(9999)  # warm-up (image unpack, page cache)
    return [fn(i) for i in range(n)]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=20, help="tasks per method (default 20)")
    ap.add_argument("--pyclient-path", type=Path, help="directory holding the containerd + grpcio packages")
    a = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="hbench-", dir="/var/tmp"))
    inst = ContainerdInstance.under(tmp / "root", tmp / "run", cri=False)
    work = tmp / "work"
    work.mkdir()
    cg_top = f"harness-bench-{os.getpid()}"
    (memory_root(1 if Path("/sys/fs/cgroup/memory").is_dir() else 2) / cg_top).mkdir()
    eng = ensure_containerd(inst)
    try:
        tar = build_image(workload_binary("leak"), LEAK_IMAGE, ["/leak"], tmp / "leak.oci.tar", "oci")
        import_into_containerd(inst.address, NAMESPACE, tar)
        t = time.monotonic()
        for _ in range(10):
            ctr(inst, "version")
        ctr_floor = (time.monotonic() - t) / 10
        print(f"containerd {ctr(inst, 'version').stdout.split('Server:')[1].split()[1]}, n={a.n} per method")
        print(f"  ctr   process floor (ctr version round trip): {ctr_floor * 1000:.2f} ms")
        rows = run(a.n, "ctr", lambda i: launch_ctr(inst, work, i, f"/{cg_top}/ctr{i}"))
        summary("ctr", rows)
        if a.pyclient_path:
            os.environ["PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION"] = "python"
            sys.path.insert(0, str(a.pyclient_path))
            t = time.monotonic()
            client = GrpcClient(inst)
            print(
                f"  grpc  one-time: import stubs, channel, image chain id: {(time.monotonic() - t) * 1000:.1f} ms"
            )
            rows = run(a.n, "grpc", lambda i: client.launch(work, i, f"/{cg_top}/grpc{i}"))
            summary("grpc", rows)
        else:
            print("  grpc  not measured (give --pyclient-path, see the docstring)")
    finally:
        failed = eng.stop()
        if failed:
            print("could not stop the private containerd: " + "; ".join(failed), file=sys.stderr)
        remove_tree(cg_top)
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # SIGTERM unwinds like Ctrl-C: cleanup runs
    sys.exit(main())
