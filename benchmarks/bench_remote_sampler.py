"""Remote sampling of cgroup files over SSH: the stdlib agent versus one SFTP read per file per tick.

Starts a real OpenSSH server on a loopback address (``tests/integration/_sshd.py``: its own host
key, a client key, known_hosts checked, no auto-accept) and creates empty test cgroups under
``<memory root>/harness/bench-remote-<pid>/`` (cgroup v1 ``/sys/fs/cgroup/memory/...``, or v2
``/sys/fs/cgroup/...`` when ``/sys/fs/cgroup/cgroup.controllers`` exists). Then, for each number
of cgroups:

agent
    ``harness/hosts/remote_sampler.py`` is pushed by SFTP and run the way the harness runs it
    (:class:`harness.hosts.remote.RemoteSampler`): ``sample`` detached on the host at N Hz
    (``/proc/meminfo`` + usage, limit and memory.stat of every cgroup), its JSON lines streamed
    back by ``follow`` over an SSH exec channel. Printed per rate:

      achieved Hz   sample lines time-stamped inside the measured interval / its length
      agent CPU %   utime+stime of the remote ``sample`` process (/proc/<pid>/stat) over the
                    interval, in % of one core
      follow CPU %  the same for the remote ``follow`` process that feeds the exec channel
      bytes/tick    mean size of one sample line as received (JSON payload, before SSH framing)
      KiB/s         bytes/tick x achieved Hz

naive SFTP
    every tick opens, reads to EOF and closes ``/proc/meminfo`` and each cgroup's
    ``memory.usage_in_bytes`` (v2 ``memory.current``) and ``memory.stat`` through one paramiko
    SFTP session, back to back for the whole interval. Printed: files per tick, mean and p95 ms per
    tick and the highest rate that allows (1000 / mean ms).

The CPU figures are read on the host through SSH (a small probe run with the host's python), so
they are those of the agent processes only, not of sshd or of the controller. Everything this
script starts is stopped by pid and the cgroups are removed (deepest first) at the end.

Run as root on a host with a memory cgroup controller::

    python3 benchmarks/bench_remote_sampler.py [--seconds 5] [--cgroups 10,100] [--hz 10,100]
                                               [--address 127.0.0.5]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from harness.hosts.remote import RemoteSampler, push_agent  # noqa: E402
from harness.hosts.remote_sampler import job_pid  # noqa: E402
from harness.hosts.ssh import SSHHost, SSHTarget  # noqa: E402
from tests.integration._sshd import LoopbackLab  # noqa: E402

# Run on the host with its python: the monotonic clock, CLK_TCK and utime+stime of the sampler pid
# and of every "follow" process reading the given spool file.
PROBE = r"""
import json, os, sys, time
spool, pids = sys.argv[1], [int(p) for p in sys.argv[2:]]
for d in os.listdir("/proc"):
    if not d.isdigit() or int(d) == os.getpid():
        continue
    try:
        argv = open(f"/proc/{d}/cmdline", "rb").read().decode(errors="replace").split("\0")
    except OSError:
        continue
    if "follow" in argv and "--file" in argv and spool in argv:
        pids.append(int(d))
ticks = {}
for pid in pids:
    try:
        raw = open(f"/proc/{pid}/stat").read()
    except OSError:
        continue
    rest = raw[raw.rindex(")") + 2 :].split()
    ticks[pid] = int(rest[11]) + int(rest[12])
print(json.dumps({"t": time.monotonic(), "clk": os.sysconf("SC_CLK_TCK"), "ticks": ticks}))
"""


# --------------------------------------------------------------------------- cgroups


def cgroup_base() -> tuple[Path, int]:
    """(memory hierarchy root, cgroup version)."""
    if Path("/sys/fs/cgroup/cgroup.controllers").exists():
        return Path("/sys/fs/cgroup"), 2
    return Path("/sys/fs/cgroup/memory"), 1


def bench_dir() -> Path:
    return cgroup_base()[0] / "harness" / f"bench-remote-{os.getpid()}"


def enable_memory(cg: Path) -> None:
    """v2: let the children of ``cg`` have the memory controller (their memory.* files)."""
    ctl = cg / "cgroup.subtree_control"
    if "memory" not in ctl.read_text().split():
        ctl.write_text("+memory")


def make_cgroups(n: int, created: list[Path]) -> list[str]:
    """Create ``harness/bench-remote-<pid>/cNNN``, appending each directory made to ``created``
    (parents first, so a failure half-way still leaves a complete list to remove); returns the
    cgroup paths relative to the memory root."""
    root, version = cgroup_base()
    harness_dir = bench_dir().parent
    if version == 2:
        enable_memory(root)
    if not harness_dir.is_dir():
        harness_dir.mkdir()
        created.append(harness_dir)
    if version == 2:
        enable_memory(harness_dir)
    bench_dir().mkdir()
    created.append(bench_dir())
    if version == 2:
        enable_memory(bench_dir())
    rels = []
    for i in range(n):
        d = bench_dir() / f"c{i:03d}"
        d.mkdir()
        created.append(d)
        rels.append(str(d.relative_to(root)))
    return rels


def remove_cgroups(created: list[Path]) -> list[str]:
    """rmdir deepest first; returns the directories that could not be removed."""
    left = []
    for d in sorted(created, key=lambda p: len(p.parts), reverse=True):
        try:
            d.rmdir()
        except FileNotFoundError:
            pass
        except OSError as exc:
            if d.name != "harness":  # created by us but meanwhile used by someone else: leave it
                left.append(f"{d}: {exc}")
    return left


# --------------------------------------------------------------------------- agent


def probe(host: SSHHost, spool: str, sampler_pid: int) -> dict[str, Any]:
    res = host.run([host.target.python, "-c", PROBE, spool, str(sampler_pid)], check=True, timeout=30)
    out: dict[str, Any] = json.loads(res.stdout.strip().splitlines()[-1])
    out["ticks"] = {int(k): v for k, v in out["ticks"].items()}
    return out


def wait_for_sample(path: Path, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and b'"kind":"sample"' in path.read_bytes():
            return
        time.sleep(0.05)
    raise RuntimeError(f"no sample arrived in {path} within {timeout:g} s")


def kill_job(job_dir: str) -> None:
    """Fallback when the agent's own ``stop`` failed: signal the job and its supervisor by pid.

    The host is this machine (loopback), so the job directory is local; ``job_pid`` checks the
    recorded start time, so a reused pid is never signalled.
    """
    for key in ("pid", "supervisor"):
        pid = job_pid(job_dir, key)
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def bench_agent(
    host: SSHHost, agent: str, work: Path, cgroups: list[str], hz: float, seconds: float
) -> dict[str, Any]:
    job_dir = str(work / f"agent-{len(cgroups)}-{hz:g}")
    local = work / f"agent-{len(cgroups)}-{hz:g}.jsonl"
    sampler = RemoteSampler(
        host,
        agent,
        job_dir,
        local,
        hz=hz,
        cgroups={f"c{i:03d}": rel for i, rel in enumerate(cgroups)},
        meminfo=True,
        max_seconds=seconds + 60,  # ends by itself even if this script dies
    )
    try:
        sampler.start()
        wait_for_sample(local)
        pid = int(json.loads(local.read_bytes().split(b"\n", 1)[0])["pid"])  # from the header line
        time.sleep(0.5)  # past the first ticks, which open the cgroup files
        p0 = probe(host, sampler.spool, pid)
        time.sleep(seconds)
        p1 = probe(host, sampler.spool, pid)
    finally:
        res = sampler.stop()
        kill_job(job_dir)
    if res.error:
        raise RuntimeError(f"the stream ended with an error: {res.error}")
    t0, t1 = p0["t"], p1["t"]
    wall, clk = t1 - t0, p1["clk"]

    def cpu(pids: list[int]) -> float | None:
        both = [p for p in pids if p in p0["ticks"] and p in p1["ticks"]]
        if not both:
            return None
        return 100.0 * sum(p1["ticks"][p] - p0["ticks"][p] for p in both) / clk / wall

    followers = [p for p in p1["ticks"] if p != pid]
    sizes = []
    with open(local, "rb") as f:
        for line in f:
            if line.startswith(b'{"kind":"sample"'):
                rec = json.loads(line)
                if t0 <= rec["t"] < t1:
                    sizes.append(len(line))
    per_tick = statistics.mean(sizes) if sizes else 0.0
    return {
        "achieved": len(sizes) / wall,
        "agent_cpu": cpu([pid]),
        "follow_cpu": cpu(followers),
        "bytes": per_tick,
        "kib_s": per_tick * len(sizes) / wall / 1024,
    }


# --------------------------------------------------------------------------- naive SFTP


def bench_sftp(host: SSHHost, cgroups: list[str], seconds: float) -> dict[str, Any]:
    root, version = cgroup_base()
    usage = "memory.usage_in_bytes" if version == 1 else "memory.current"
    files = ["/proc/meminfo"]
    for rel in cgroups:
        files += [str(root / rel / usage), str(root / rel / "memory.stat")]
    sftp = host.current().client.open_sftp()
    try:
        durations: list[float] = []
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline or len(durations) < 3:
            t = time.perf_counter()
            for path in files:
                with sftp.open(path, "rb") as f:
                    if not f.read():
                        raise RuntimeError(f"empty read of {path} over SFTP")
            durations.append(time.perf_counter() - t)
    finally:
        sftp.close()
    mean_ms = statistics.mean(durations) * 1000
    p95_ms = sorted(durations)[int(0.95 * (len(durations) - 1))] * 1000
    return {
        "files": len(files),
        "ticks": len(durations),
        "mean": mean_ms,
        "p95": p95_ms,
        "max_hz": 1000 / mean_ms,
    }


# --------------------------------------------------------------------------- main


def fmt(v: float | None, spec: str) -> str:
    return "n/a" if v is None else format(v, spec)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=5.0, help="measured interval per case")
    ap.add_argument("--cgroups", default="10,100", help="comma-separated numbers of cgroups")
    ap.add_argument("--hz", default="10,100", help="comma-separated agent sampling rates")
    ap.add_argument("--address", default="127.0.0.5", help="loopback address of the benchmark's sshd")
    args = ap.parse_args()
    counts = [int(x) for x in args.cgroups.split(",") if x]
    rates = [float(x) for x in args.hz.split(",") if x]
    if os.geteuid() != 0:
        print("run as root (cgroups are created and sshd runs as root)", file=sys.stderr)
        return 2

    work = Path(tempfile.mkdtemp(prefix="bench-remote-"))
    lab: LoopbackLab | None = None
    host: SSHHost | None = None
    created: list[Path] = []
    agent_rows: list[tuple[int, float, dict[str, Any]]] = []
    sftp_rows: list[tuple[int, dict[str, Any]]] = []
    try:
        rels = make_cgroups(max(counts), created)
        lab = LoopbackLab.start(work / "lab", [("bench", args.address)])
        h = lab.hosts["bench"]
        target = SSHTarget(
            "bench",
            h.address,
            h.port,
            "root",
            key_file=lab.client_key,
            known_hosts=lab.known_hosts,  # host_key_policy stays "reject": no auto-accept
            connect_timeout=10.0,
            python=sys.executable,
        )
        host = SSHHost(target).connect()
        agent = push_agent(host, str(work / "remote"))
        print(
            f"sshd {h.address}:{h.port}, cgroup v{cgroup_base()[1]}, {args.seconds:g} s per case, "
            f"cgroups under {bench_dir()}",
            flush=True,
        )
        for n in counts:
            for hz in rates:
                agent_rows.append((n, hz, bench_agent(host, agent, work, rels[:n], hz, args.seconds)))
            sftp_rows.append((n, bench_sftp(host, rels[:n], args.seconds)))
    finally:
        if host is not None:
            host.close()
        if lab is not None:
            lab.stop()
        left = remove_cgroups(created)
        shutil.rmtree(work, ignore_errors=True)
        for msg in left:
            print(f"warning: could not remove cgroup {msg}", file=sys.stderr)

    print()
    print("agent: remote_sampler.py sample (detached) + follow over an SSH exec channel, + /proc/meminfo")
    print(
        f"{'cgroups':>7} {'hz':>5} {'achieved Hz':>11} {'agent CPU %':>11} {'follow CPU %':>12} "
        f"{'bytes/tick':>10} {'KiB/s':>8}"
    )
    for n, hz, r in agent_rows:
        print(
            f"{n:>7} {hz:>5g} {r['achieved']:>11.1f} {fmt(r['agent_cpu'], '.1f'):>11} "
            f"{fmt(r['follow_cpu'], '.1f'):>12} {r['bytes']:>10.0f} {r['kib_s']:>8.1f}"
        )
    print()
    print("naive: one paramiko SFTP open/read/close per file per tick (usage + memory.stat, + /proc/meminfo)")
    print(f"{'cgroups':>7} {'files/tick':>10} {'ticks':>6} {'ms/tick':>8} {'p95 ms':>8} {'max Hz':>7}")
    for n, r in sftp_rows:
        print(
            f"{n:>7} {r['files']:>10} {r['ticks']:>6} {r['mean']:>8.1f} {r['p95']:>8.1f} {r['max_hz']:>7.1f}"
        )
    return 0


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # SIGTERM unwinds like Ctrl-C: cleanup runs
    sys.exit(main())
