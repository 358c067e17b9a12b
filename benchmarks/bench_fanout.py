"""Lab fan-out: ``harness run --inventory`` over N loopback sshd hosts with ``--forks N``.

Starts N real OpenSSH servers on loopback addresses 127.0.19.1, 127.0.19.2, ... (each with its own
host key, ``tests/integration/_sshd.py``) and writes an inventory that gives every host its own
directories (harness venv, results; the remote runs get their own run ids, so their cgroups are
``harness/<run-id>``). Each host's sshd is started in its own memory cgroup
``harness-bench-fanout-<pid>/<host>`` (limit ``--host-memory``) under a parent capped at
``--lab-memory``: everything that host runs (the remote harness, the sampler agent, pip during the
deployment) is confined there, as 50 concurrent runs share this machine's memory. The suite is one
tiny scenario on the process backend (a 4 MiB leak that holds 1 s and exits, limit 32 MiB).

First the harness is deployed on all hosts once (``harness provision INV --playbook harness.yml``,
cold: venv and pip per host). Then, for each N, a fresh controller process runs
``run_on_inventory`` (the code behind ``harness run --inventory``) on the first N hosts: all hosts
alive, then with one dead host: 1 s after that host's remote run has started, its sshd processes
(the listener this script started and its connections, by pid) are SIGKILLed (``kill``: the
connections are reset, the host refuses new ones) or SIGSTOPped (``stop``: a hung or powered-off
host; TCP stays up and nothing answers). Printed per run:

  wall s        the controller's run from start to merged results
  deploy s      playbooks/harness.yml on the N hosts (warm: nothing to change)
  gather s      the remote runs started, followed and fetched, and the results merged
  ctl CPU s     utime+stime of the controller process (its threads: paramiko, merging), and per host
  ansible CPU s utime+stime of its children (ansible-playbook and its forks)
  RSS MiB       the controller's peak RSS, and (peak - RSS before the run) / N per host
  host s        median and max of the hosts' own elapsed time (deployment excluded); with a dead
                host: the others only, to compare with the run without one

Run as root, under the machine-wide lock (the remote runs use the harness cgroup tree)::

    flock /tmp/harness-shared.lock python3 benchmarks/bench_fanout.py [--hosts 5,10,25,50] [--dead kill,stop]
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from harness.hosts.lab import run_on_inventory  # noqa: E402
from harness.provision.inventory import load_inventory  # noqa: E402
from harness.quantity import to_bytes  # noqa: E402
from tests.integration._sshd import LoopbackLab, children  # noqa: E402

SUITE = """\
apiVersion: harness/v1
kind: Suite
name: fanout
profile: profiles/local.yaml
node: {memoryCapacity: 1Gi}
sampleHz: 2
scenarios:
  - name: tiny-hold
    id: F1
    timeout: 8s
    backends: [process]
    workloads:
      - name: holder
        resources: {requests: {memory: 16Mi}, limits: {memory: 32Mi}}
        leak: {chunk: 1Mi, interval: 100ms, max: 4Mi, hold: 1s}
"""


def _rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def _tree(pid: int) -> list[int]:
    out = [pid]
    for c in children(pid):
        out += _tree(c)
    return out


def worker(args: argparse.Namespace) -> None:
    """One controller run in this process; prints one JSON line with its figures."""
    inventory = load_inventory(args.inventory)
    rss0 = _rss_kib()
    killed: dict[str, Any] = {}

    def kill_host() -> None:
        time.sleep(args.kill_after)
        pids = _tree(args.kill_pid)  # the listener and its connections, before their parent goes
        sig = signal.SIGKILL if args.dead == "kill" else signal.SIGSTOP
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        killed.update(host=args.kill_host, how=args.dead, pids=pids, wall=time.time())

    class Sink:
        """Progress sink: starts the kill when the victim's remote run has named its run id."""

        def __init__(self) -> None:
            self.armed = bool(args.kill_host)
            self.lock = threading.Lock()

        def write(self, s: str) -> int:
            with self.lock:
                if self.armed and s.startswith(f"[{args.kill_host}] harness: run "):
                    self.armed = False
                    threading.Thread(target=kill_host, daemon=True).start()
            return len(s)

        def flush(self) -> None:
            pass

    t0 = time.monotonic()
    result = run_on_inventory(
        args.suite, inventory, Path(args.results), forks=args.forks, stream=Sink(), remote_hz=args.remote_hz
    )
    wall = time.monotonic() - t0
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    run = json.loads((result.run_dir / "run.json").read_text())
    print(
        json.dumps(
            {
                "wall_s": wall,
                "timings": run.get("timings", {}),
                "ctl_cpu_s": me.ru_utime + me.ru_stime,
                "children_cpu_s": kids.ru_utime + kids.ru_stime,
                "peak_rss_kib": me.ru_maxrss,
                "rss_before_kib": rss0,
                "hosts": {
                    n: {"status": h["status"], "elapsed_s": h["elapsed_s"]} for n, h in run["hosts"].items()
                },
                "killed": killed,
                "status": result.status,
            }
        )
    )


class HostCgroups:
    """A memory cgroup per host under one capped parent; removed (deepest first) at the end."""

    def __init__(self, lab_limit: int, host_limit: int) -> None:
        v1 = Path("/sys/fs/cgroup/memory")
        self.v2 = not v1.is_dir()
        root = Path("/sys/fs/cgroup") if self.v2 else v1
        self.parent = root / f"harness-bench-fanout-{os.getpid()}"
        self.parent.mkdir()
        if self.v2:
            (self.parent / "memory.max").write_text(str(lab_limit))
            (self.parent / "cgroup.subtree_control").write_text("+memory")
        else:
            (self.parent / "memory.limit_in_bytes").write_text(str(lab_limit))
        self.host_limit = host_limit
        self.dirs: list[Path] = []

    def confine(self, name: str, pid: int) -> None:
        d = self.parent / name
        d.mkdir()
        self.dirs.append(d)
        (d / ("memory.max" if self.v2 else "memory.limit_in_bytes")).write_text(str(self.host_limit))
        (d / "cgroup.procs").write_text(str(pid))

    def peak_mib(self) -> float:
        f = self.parent / ("memory.peak" if self.v2 else "memory.max_usage_in_bytes")
        with contextlib.suppress(OSError, ValueError):
            return int(f.read_text()) / 2**20
        return float("nan")

    def remove(self) -> None:
        for d in [*self.dirs, self.parent]:
            for _ in range(50):
                try:
                    d.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:  # processes of the host still leaving (detached remote runs)
                    procs = [int(p) for p in (d / "cgroup.procs").read_text().split()] if d.exists() else []
                    for p in procs:
                        with contextlib.suppress(ProcessLookupError):
                            os.kill(p, signal.SIGKILL)
                    time.sleep(0.2)


def _controller(
    base: Path, inv: Path, suite: Path, n: int, tag: str, kill: tuple[str, int, str] | None, hz: float
) -> dict[str, Any]:
    argv = [sys.executable, __file__, "--worker", "--inventory", str(inv), "--suite", str(suite)]
    argv += ["--results", str(base / "results" / tag), "--forks", str(n), "--remote-hz", str(hz)]
    if kill:
        argv += ["--kill-host", kill[0], "--kill-pid", str(kill[1]), "--dead", kill[2]]
    proc = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=3600)
    if proc.returncode != 0:
        raise SystemExit(f"controller run {tag} failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


def _row(n: int, dead: str, fig: dict[str, Any]) -> str:
    t = fig["timings"]
    victim = fig["killed"].get("host")
    others = [h["elapsed_s"] for name, h in fig["hosts"].items() if name != victim]
    ok = sum(1 for name, h in fig["hosts"].items() if h["status"] == "complete")
    per_host_rss = (fig["peak_rss_kib"] - fig["rss_before_kib"]) / 1024 / n
    return (
        f"{n:>5} {dead:>5} {fig['wall_s']:>7.1f} {t.get('deploy_s', 0):>8.1f} "
        f"{t.get('hosts_s', 0) + t.get('merge_s', 0):>8.1f} {fig['ctl_cpu_s']:>9.1f} {fig['ctl_cpu_s'] / n:>9.2f} "
        f"{fig['children_cpu_s']:>11.1f} {fig['peak_rss_kib'] / 1024:>7.0f} {per_host_rss:>9.1f} "
        f"{statistics.median(others):>8.1f} {max(others):>7.1f} {ok:>4}/{n}"
    )


HEADER = (
    "hosts  dead  wall s deploy s gather s ctl CPU s CPU s/host ansible CPU RSS MiB MiB/host "
    "host s med     max   ok"
)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hosts", default="5,10,25,50", help="host counts (comma-separated)")
    ap.add_argument(
        "--dead",
        default="kill,stop",
        help="runs with one dead host: kill (its sshd processes SIGKILLed: connections reset), stop "
        "(SIGSTOPped: a hung host, TCP up, no answer); comma-separated, '' for none",
    )
    ap.add_argument("--dead-at", default="", help="host counts with the dead-host runs (default: all)")
    ap.add_argument(
        "--lock",
        help="take this flock (the machine-wide lock) only for the runs, after the cold deployment "
        "(which uses no shared resource); not when the whole command already runs under it",
    )
    ap.add_argument("--host-memory", default="768Mi", help="memory limit of each host's cgroup")
    ap.add_argument("--lab-memory", default="14Gi", help="memory limit of all hosts together")
    ap.add_argument("--remote-hz", type=float, default=5.0, help="remote sampler rate (harness default 5)")
    ap.add_argument("--address", default="127.0.19", help="first three octets of the hosts' addresses")
    ap.add_argument("--keep", action="store_true", help="keep the temp folder (results, logs)")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--inventory", help=argparse.SUPPRESS)
    ap.add_argument("--suite", help=argparse.SUPPRESS)
    ap.add_argument("--results", help=argparse.SUPPRESS)
    ap.add_argument("--forks", type=int, default=5, help=argparse.SUPPRESS)
    ap.add_argument("--kill-host", help=argparse.SUPPRESS)
    ap.add_argument("--kill-pid", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--kill-after", type=float, default=1.0, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker(args)
        return

    counts = sorted({int(x) for x in args.hosts.split(",")})
    if counts[0] < 2:
        raise SystemExit("--hosts: at least 2 (one of them is killed in the dead-host runs)")
    top = counts[-1]
    base = Path(tempfile.mkdtemp(prefix="harness-bench-fanout-"))
    cgroups = HostCgroups(to_bytes(args.lab_memory), to_bytes(args.host_memory))
    lab: LoopbackLab | None = None
    try:
        (base / "profiles").mkdir()
        shutil.copy(REPO / "profiles" / "local.yaml", base / "profiles" / "local.yaml")
        suite = base / "suite.yaml"
        suite.write_text(SUITE)
        names = [(f"fan-{i:02d}", f"{args.address}.{i}") for i in range(1, top + 1)]
        t = time.monotonic()
        lab = LoopbackLab.start(base / "lab", names)
        for name, h in lab.hosts.items():
            assert h.proc is not None
            cgroups.confine(name, h.proc.pid)
        print(f"{top} sshd hosts on {args.address}.1-{top} in {time.monotonic() - t:.1f} s", flush=True)
        state = {"lab_dir": str(base / "state" / "{{ inventory_hostname }}")}
        state["lab_run_dir"] = str(base / "run" / "{{ inventory_hostname }}")
        all_inv = lab.inventory(base / f"lab-{top}.yaml", defaults_vars=state)
        t = time.monotonic()
        prov = subprocess.run(
            [
                *(sys.executable, "-m", "harness", "provision", str(all_inv), "--playbook", "harness.yml"),
                *("--forks", str(top), "--results", str(base / "provision")),
            ],
            cwd=REPO,
            capture_output=True,
            text=True,
        )
        if prov.returncode != 0:
            raise SystemExit(f"cold deployment failed ({prov.returncode}):\n{prov.stderr[-4000:]}")
        print(f"cold deployment (harness.yml) of {top} hosts: {time.monotonic() - t:.1f} s", flush=True)
        if args.lock:
            lock_fd = os.open(args.lock, os.O_RDWR | os.O_CREAT, 0o666)
            t = time.monotonic()
            fcntl.flock(lock_fd, fcntl.LOCK_EX)  # released when this process exits
            print(f"waited {time.monotonic() - t:.0f} s for {args.lock}", flush=True)
        dead_at = {int(x) for x in args.dead_at.split(",") if x} or set(counts)
        print(HEADER, flush=True)
        for n in counts:
            hosts = [name for name, _ in names[:n]]
            inv = lab.inventory(base / f"lab-{n}.yaml", hosts, defaults_vars=state)
            fig = _controller(base, inv, suite, n, f"{n}-alive", None, args.remote_hz)
            print(_row(n, "-", fig), flush=True)
            for how in [x for x in args.dead.split(",") if x and n in dead_at]:
                victim = lab.hosts[hosts[-1]]
                assert victim.proc is not None
                kill = (victim.name, victim.proc.pid, how)
                fig = _controller(base, inv, suite, n, f"{n}-{how}", kill, args.remote_hz)
                print(_row(n, how, fig), flush=True)
                for pid in fig["killed"].get("pids", []):  # a stopped host: let its processes go on
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGCONT)
                victim.stop()  # stops or reaps the listener (by pid); a fresh one for what follows
                victim.start()
                assert victim.proc is not None
                (cgroups.parent / victim.name / "cgroup.procs").write_text(str(victim.proc.pid))
        print(f"peak memory of all hosts together (their cgroups): {cgroups.peak_mib():.0f} MiB")
    finally:
        if lab is not None:
            lab.stop()
        cgroups.remove()
        if args.keep:
            print(f"kept {base}")
        else:
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
