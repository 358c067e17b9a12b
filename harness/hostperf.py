"""How fast this host can fault in memory, and a warm-up that makes the fast rate reachable.

Why: a leak asks for a rate (chunk / interval) but the kernel has to fault every page in. On a
VM, memory the guest has not touched recently is backed lazily by the hypervisor (Firecracker
with a free-page-reporting balloon, TCG, ...): the first touch of such a page costs a fault on
the host as well, several times the cost of a page the guest freed a moment ago. A leak asking
1 GiB/s then allocates 150-200 MiB/s, and a scenario or sweep never reaches the rates it exists
to test. Measured on the development VM: 200 MiB/s first touch, 1.3-2 GiB/s for memory freed
seconds before (see README, "Rate sweeps").

Two measures, both with the project's own leak program (``workloads/build/leak``, the program
whose pace matters), run twice back to back in a scratch memory cgroup with a limit:

* **first touch**: memory this guest has not used recently, as the scenario's leak would get it
  (if something freed memory just before, this pass is warm too: then both figures agree);
* **retouch**: the same amount again, right after the first pass freed it (pages the guest
  recycles from its free lists).

:func:`warm_up` touches and releases the memory a scenario will use, inside the scenario's own
node cgroup, just before its workloads start, so the leak runs on recycled pages. Memory stays
warm for tens of seconds (measured: still warm after 60 s), longer than a scenario's start.
This VM's balloon reports free pages to the host (``free_page_reporting``): the guest keeps using
recently freed (warm) pages first, and memory beyond that pool is cold (measured: a 3 GiB first
touch ran at ~2 GiB/s for the first 2.3 GiB, then ~230 MiB/s).

Bottom layer: cgroup files and the leak binary only (no harness.launch, no harness.run).
"""

from __future__ import annotations

import contextlib
import errno
import json
import math
import os
import signal
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.errors import HostError

MiB = 1 << 20
GiB = 1 << 30
CHUNK_BYTES = 64 * MiB  # one leak chunk: large enough that the per-chunk syscalls are noise
DOCTOR_PROBE_BYTES = 1 * GiB  # ~5 s first touch at 200 MiB/s
RUN_PROBE_BYTES = 256 * MiB  # at the start of every run (HARNESS_PAGEFAULT_PROBE=BYTES, 0 = off)
# a pass that takes longer than this is stopped: the host is far too slow to matter anyway
PASS_TIMEOUT_S = 60.0
# memory left free for everything else on the host while a probe or warm-up runs
RESERVE_BYTES = 2 * GiB
# first touch below this fraction of the retouch rate: a warm-up changes the achievable rate
COLD_RATIO = 0.5
# a verification pass after the warm-up retouches at most this much (its rate is the "after")
VERIFY_BYTES = 512 * MiB
WARM_UP_MODES = ("auto", "on", "off")
CGROUP_ROOT = Path("/sys/fs/cgroup")
# include/uapi/linux/virtio_balloon.h: VIRTIO_BALLOON_F_REPORTING 5 (free page reporting: the guest
# hands free pages back to the host, mm/page_reporting.c, PAGE_REPORTING_DELAY 2 s after they pile up)
BALLOON_F_REPORTING = 5
VIRTIO_BALLOON = Path("/sys/bus/virtio/drivers/virtio_balloon")
# the coldest measurement seen on this host (see remember())
HOST_RECORD = Path(os.environ.get("HARNESS_WORKDIR", "/var/tmp/harness")) / "pagefaults.json"


def leak_binary() -> Path:
    """The static leak program (``make -C workloads``); HARNESS_LEAK_BIN overrides (as the backends)."""
    repo = Path(__file__).resolve().parents[1]
    return Path(os.environ.get("HARNESS_LEAK_BIN", repo / "workloads" / "build" / "leak"))


# ------------------------------------------------------------------------------------------
# results


@dataclass
class TouchPass:
    """One run of the leak at full speed: how long each chunk took to fault in."""

    bytes: int
    seconds: float
    chunk_bytes: int
    chunk_ms: list[float] = field(default_factory=list)

    @property
    def rate(self) -> float:
        """Bytes per second over the whole pass."""
        return self.bytes / self.seconds if self.seconds > 0 else math.inf

    def to_dict(self) -> dict[str, Any]:
        return {
            "bytes": self.bytes,
            "seconds": round(self.seconds, 4),
            "bytes_per_s": round(self.rate),
            "chunk_bytes": self.chunk_bytes,
            "chunk_ms": [round(x, 1) for x in self.chunk_ms],
        }


@dataclass
class PageFaultRates:
    """First touch vs retouch of the same amount of memory."""

    fresh: TouchPass
    retouch: TouchPass
    measured_at: float = field(default_factory=time.time)
    coldest: dict[str, Any] | None = None  # the coldest record on this host after this one (remember())

    @property
    def ratio(self) -> float:
        """First-touch rate / retouch rate (1 = no difference; 0.15 on a cold Firecracker guest)."""
        return self.fresh.rate / self.retouch.rate if self.retouch.rate > 0 else 1.0

    @property
    def cold_slow(self) -> bool:
        """Memory the guest has not used recently faults in much slower than recycled memory."""
        return self.ratio < COLD_RATIO

    def to_dict(self) -> dict[str, Any]:
        return {
            "fresh": self.fresh.to_dict(),
            "retouch": self.retouch.to_dict(),
            "fresh_bytes_per_s": round(self.fresh.rate),
            "retouch_bytes_per_s": round(self.retouch.rate),
            "ratio": round(self.ratio, 3),
            "cold_slow": self.cold_slow,
            "free_page_reporting": free_page_reporting(),
            "measured_at": self.measured_at,
        }

    def describe(self) -> str:
        return (
            f"first touch {_mib_s(self.fresh.rate)} ({_chunks(self.fresh)}), "
            f"retouch {_mib_s(self.retouch.rate)} ({_chunks(self.retouch)})"
            + (
                f": fresh memory is {1 / self.ratio:.1f}x slower, a warm-up helps"
                if self.cold_slow
                else (
                    ": the memory probed was warm, but the balloon hands freed pages back to the host "
                    "(memory beyond the recently used pool faults in slower)"
                    if free_page_reporting()
                    else ": no warm-up needed (or the memory was already warm)"
                )
            )
        )


def _mib_s(rate: float) -> str:
    return f"{rate / MiB:.0f} MiB/s"


def _chunks(p: TouchPass) -> str:
    ms = sorted(p.chunk_ms)
    if not ms:
        return "no chunks"
    return f"{p.bytes // MiB} MiB, {p.chunk_bytes // MiB} MiB chunks {ms[0]:.0f}-{ms[-1]:.0f} ms"


# ------------------------------------------------------------------------------------------
# cgroup scratch space (one memory cgroup with a limit; v1 memory hierarchy or v2 unified)


def _memory_root(root: Path = CGROUP_ROOT) -> tuple[Path, int]:
    if (root / "cgroup.controllers").exists():
        return root, 2
    if (root / "memory").is_dir():
        return root / "memory", 1
    raise HostError(f"no memory cgroup controller found under {root}")


@contextlib.contextmanager
def scratch_cgroup(rel: str, limit: int, root: Path = CGROUP_ROOT) -> Iterator[Path]:
    """Create the memory cgroup ``rel`` (and missing parents) with ``limit``; remove what was created.

    Processes still inside at the end are killed by pid before the directories are removed."""
    mem, version = _memory_root(root)
    created: list[Path] = []
    cur = mem
    try:
        for part in rel.strip("/").split("/"):
            parent, cur = cur, cur / part
            if version == 2:
                ctl = parent / "cgroup.subtree_control"
                if "memory" not in ctl.read_text().split():
                    ctl.write_text("+memory")
            if not cur.exists():
                cur.mkdir()
                if not (cur.parent == mem and part == "harness"):  # the shared top stays, as with runs
                    created.append(cur)
        (cur / ("memory.limit_in_bytes" if version == 1 else "memory.max")).write_text(str(limit))
        yield cur
    except OSError as exc:
        raise HostError(f"cgroup {cur}: {exc.strerror or exc}") from None
    finally:
        for d in reversed(created):
            _rmdir(d)


def _rmdir(d: Path, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(OSError, ValueError):
            for pid in (d / "cgroup.procs").read_text().split():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(pid), signal.SIGKILL)
        try:
            d.rmdir()
            return
        except FileNotFoundError:
            return
        except OSError as exc:
            if exc.errno != errno.EBUSY or time.monotonic() > deadline:
                return  # left for 'harness cleanup' (the path is under harness/)
            time.sleep(0.05)


def free_page_reporting(driver: Path = VIRTIO_BALLOON) -> bool:
    """Does a virtio balloon report free pages to the host (so freed memory goes cold again)?

    The device's ``features`` file is one character per feature bit ("1" = negotiated)."""
    for dev in sorted(driver.glob("virtio*")) if driver.is_dir() else []:
        with contextlib.suppress(OSError):
            bits = (dev / "features").read_text().strip()
            if len(bits) > BALLOON_F_REPORTING and bits[BALLOON_F_REPORTING] == "1":
                return True
    return False


def mem_available() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    return 0


# ------------------------------------------------------------------------------------------
# one pass of the leak program


def touch_pass(
    cgroup_dir: Path, nbytes: int, chunk: int = CHUNK_BYTES, timeout_s: float = PASS_TIMEOUT_S
) -> TouchPass:
    """Run the leak at full speed (no interval) up to ``nbytes`` in ``cgroup_dir``, then let it exit.

    Chunk times come from the program's own JSON lines (``mono_ns`` of the start line and of each
    chunk line, workloads/leak.c ``emit``), so process start-up is not counted."""
    binary = leak_binary()
    if not binary.is_file():
        raise HostError(f"leak binary {binary} not found: run 'make -C workloads' (or scripts/setup.sh)")
    procs = str(cgroup_dir / "cgroup.procs")

    def preexec() -> None:  # between fork and exec: syscalls only
        fd = os.open(procs, os.O_WRONLY)
        os.write(fd, b"0")
        os.close(fd)

    args = [str(binary), f"--chunk={chunk}", "--interval-ms=0", f"--max={nbytes}", "--hold-ms=0"]
    p = subprocess.Popen(
        args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, preexec_fn=preexec
    )
    try:
        out, err = p.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.kill(p.pid, signal.SIGKILL)
        p.communicate()
        raise HostError(
            f"page-fault probe: {nbytes // MiB} MiB not touched within {timeout_s:.0f} s"
        ) from None
    return parse_pass(out.decode(errors="replace"), nbytes, chunk, p.returncode, err.decode(errors="replace"))


def parse_pass(text: str, nbytes: int, chunk: int, returncode: int = 0, stderr: str = "") -> TouchPass:
    """A :class:`TouchPass` from the leak's JSON lines."""
    t_prev: int | None = None
    t_first: int | None = None
    durations: list[float] = []
    allocated = 0
    for line in text.splitlines():
        try:
            d = json.loads(line)
        except ValueError:
            continue
        if d.get("event") == "start":
            t_prev = t_first = int(d["mono_ns"])
        elif d.get("event") == "chunk" and t_prev is not None:
            t = int(d["mono_ns"])
            durations.append((t - t_prev) / 1e6)
            t_prev = t
            allocated = int(d.get("allocated", allocated))
    if returncode != 0 or t_first is None or t_prev is None or allocated < nbytes:
        why = f"exit {returncode}" if returncode >= 0 else f"signal {-returncode}"
        raise HostError(
            f"page-fault probe: the leak stopped after {allocated // MiB} of {nbytes // MiB} MiB ({why})"
            + (f": {stderr.strip()[-200:]}" if stderr.strip() else "")
        )
    return TouchPass(bytes=allocated, seconds=(t_prev - t_first) / 1e9, chunk_bytes=chunk, chunk_ms=durations)


# ------------------------------------------------------------------------------------------
# measuring


def measure(
    nbytes: int = DOCTOR_PROBE_BYTES, cgroup_rel: str | None = None, chunk: int = CHUNK_BYTES
) -> PageFaultRates:
    """First touch then retouch of ``nbytes`` in a scratch cgroup (default ``harness/hostperf-<id>``,
    removed after; under ``harness/`` so that 'harness cleanup' finds it after a crash)."""
    avail = mem_available()
    if nbytes + RESERVE_BYTES > avail:
        raise HostError(
            f"page-fault probe: {nbytes // MiB} MiB wanted but only {avail // MiB} MiB available "
            f"(keeping {RESERVE_BYTES // MiB} MiB free)"
        )
    rel = cgroup_rel or f"harness/hostperf-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    with scratch_cgroup(rel, nbytes + chunk) as cg:
        fresh = touch_pass(cg, nbytes, chunk)
        again = touch_pass(cg, nbytes, chunk)
    r = PageFaultRates(fresh, again)
    r.coldest = remember(r)
    return r


def run_probe_bytes() -> int:
    raw = os.environ.get("HARNESS_PAGEFAULT_PROBE", "").strip()
    return int(raw) if raw else RUN_PROBE_BYTES


def measure_for_run(run_id: str, say: Callable[[str], None] | None = None) -> dict[str, Any]:
    """The run-start measurement, as recorded in run.json (``host.pageFaults``); never raises:
    a host that cannot be measured is recorded with the reason."""
    n = run_probe_bytes()
    if n <= 0:
        return {"skipped": "HARNESS_PAGEFAULT_PROBE=0"}
    try:
        r = measure(n, cgroup_rel=f"harness/{run_id}/hostperf")
    except HostError as exc:
        if say:
            say(f"harness: warning: {exc}")
        return {"error": str(exc)}
    if say:
        say(f"harness: page faults: {r.describe()}")
    return {**r.to_dict(), "host_coldest": r.coldest}


def remember(r: PageFaultRates, path: Path | None = None) -> dict[str, Any]:
    """Keep the coldest measurement (lowest first-touch/retouch ratio) seen on this host, and return it.

    Why: a probe's first pass measures fresh memory only if the guest has not just freed that much
    (a run right after another one finds its memory warm). Whether this host *can* be slow for
    fresh memory is a property of the host, so ``auto`` decides from the coldest figure seen."""
    path = path or HOST_RECORD
    cur = {k: v for k, v in r.to_dict().items() if k not in ("fresh", "retouch")}
    try:
        old = json.loads(path.read_text())
    except (OSError, ValueError):
        old = None
    if isinstance(old, dict) and "ratio" in old and float(old["ratio"]) <= cur["ratio"]:
        return old
    with contextlib.suppress(OSError):
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}")
        tmp.write_text(json.dumps(cur) + "\n")
        os.replace(tmp, path)
    return cur


# ------------------------------------------------------------------------------------------
# warm-up


def scenario_need(
    scenario: Any, limits: dict[str, int | None], workload_limits: dict[str, int | None]
) -> int:
    """Bytes a scenario's workloads can allocate: per workload its leak max (x processes) or its
    memory limit, whichever is smaller; summed, then capped by the kubepods limit or the node's.

    ``limits`` is the node layout's (path below the node -> limit; "" is the node)."""
    total = 0.0
    for w in scenario.workloads:
        leak = w.leak
        own = leak.max_bytes * leak.processes if leak.max_bytes else math.inf
        lim = workload_limits.get(w.name)
        total += min(own, lim if lim is not None else math.inf)
    caps = [v for v in (limits.get("kubepods"), limits.get("")) if v is not None]
    if caps:
        total = min(total, min(caps))
    if total == math.inf:
        total = float(scenario.node.memory_capacity_bytes) if scenario.node is not None else 0.0
    return int(total)


def fastest_ask(scenario: Any) -> float:
    """The highest rate any workload of the scenario asks for (bytes/s)."""
    rates = [w.leak.rate_bytes_per_s for w in scenario.workloads]
    return max(rates, default=0.0)


def decide(mode: str, perf: dict[str, Any] | None, scenario: Any) -> tuple[bool, str]:
    """Warm up or not, and why. ``auto`` warms up when fresh memory is slow on this host and a
    workload asks for more than the fresh rate: only then does a warm-up change what the leak can
    reach. Fresh memory is slow when the run-start probe saw it (first touch below ``COLD_RATIO``
    of retouch), or an earlier probe on this host did (``host_coldest``), or the probe landed in
    memory the guest had just used but the balloon reports free pages to the host (then memory
    beyond that pool is cold; its rate is taken as ``COLD_RATIO`` x retouch)."""
    if mode not in WARM_UP_MODES:
        raise ValueError(f"warm-up mode {mode!r}: one of {', '.join(WARM_UP_MODES)}")
    if mode == "off":
        return False, "off"
    if mode == "on":
        return True, "on"
    if not perf or "fresh_bytes_per_s" not in perf:
        return False, "auto: no page-fault measurement"
    if not perf.get("cold_slow") and (perf.get("host_coldest") or {}).get("cold_slow"):
        perf = perf["host_coldest"]  # this run found its memory warm; the host has been seen cold
    fresh, warm = float(perf["fresh_bytes_per_s"]), float(perf["retouch_bytes_per_s"])
    if not perf.get("cold_slow"):
        if not perf.get("free_page_reporting"):
            return False, f"auto: first touch {_mib_s(fresh)} is not much below retouch {_mib_s(warm)}"
        fresh = COLD_RATIO * warm  # the probe found warm memory; beyond it, memory is cold
    ask = fastest_ask(scenario)
    if ask <= fresh:
        return (
            False,
            f"auto: the fastest leak asks {_mib_s(ask)}, within the first-touch rate {_mib_s(fresh)}",
        )
    return True, f"auto: first touch {_mib_s(fresh)}, retouch {_mib_s(warm)}, a leak asks {_mib_s(ask)}"


def warm_up(cgroup_rel: str, nbytes: int, chunk: int = CHUNK_BYTES) -> dict[str, Any]:
    """Touch and release ``nbytes`` in the memory cgroup ``cgroup_rel`` (created and removed
    here), then retouch up to ``VERIFY_BYTES`` to measure the rate the leak can now reach.

    ``rate_before``: the warm-up pass itself (first touch); ``rate_after``: the verification."""
    avail = mem_available()
    n = min(nbytes, max(0, avail - RESERVE_BYTES))
    n -= n % (4 * 1024)
    if n < chunk // 4:
        raise HostError(
            f"warm-up: {nbytes // MiB} MiB wanted, {avail // MiB} MiB available "
            f"(keeping {RESERVE_BYTES // MiB} MiB free): nothing to do"
        )
    t0 = time.monotonic()
    with scratch_cgroup(cgroup_rel, n + chunk) as cg:
        first = touch_pass(cg, n, chunk)
        verify = touch_pass(cg, min(n, VERIFY_BYTES), chunk)
    return {
        "bytes": n,
        "bytes_wanted": nbytes,
        "seconds": round(time.monotonic() - t0, 3),
        "rate_before": round(first.rate),
        "rate_after": round(verify.rate),
        "warm_up": first.to_dict(),
        "verify": verify.to_dict(),
        "cgroup": cgroup_rel,
    }


def warm_up_scenario(
    ctx: Any, mode: str, perf: dict[str, Any] | None, say: Callable[[str], None]
) -> dict[str, Any] | None:
    """The per-scenario step: decide, warm up the scenario's memory in ``<node>/warmup``, report.

    ``ctx`` is the run's ScenarioContext (scenario, layout, tree). The warm-up cgroup lives below
    the scenario's node cgroup: with the process/docker/containerd backends that is the node the
    workloads run in (its limit confines the warm-up too); with the kubelet it is a harness cgroup
    on the host beside kubepods (same kernel page allocator, but not counted in the kubelet's
    allocatable signals, so the kubelet sees no pods' memory move). Returns the record for run.json
    (None when off), with ``error`` instead of figures when the host could not be warmed."""
    sc = ctx.scenario
    on, why = decide(mode, perf, sc)
    if not on:
        return None if mode == "off" else {"scenario": sc.name, "done": False, "reason": why}
    need = scenario_need(
        sc, ctx.layout.limits, {n: w.memory_limit_bytes for n, w in ctx.layout.workloads.items()}
    )
    rel = ctx.tree.rel("warmup")
    try:
        rec = warm_up(rel, need)
    except HostError as exc:
        say(f"  warm-up: skipped: {exc}")
        return {"scenario": sc.name, "done": False, "reason": why, "error": str(exc)}
    say(
        f"  warm-up: touched and released {rec['bytes'] // MiB} MiB in {rec['seconds']:.1f} s "
        f"(first touch {_mib_s(rec['rate_before'])}, now {_mib_s(rec['rate_after'])}; {why})"
    )
    return {"scenario": sc.name, "done": True, "reason": why, **rec}


def doctor_line(nbytes: int = DOCTOR_PROBE_BYTES) -> str:
    """``harness doctor``'s line (informational: a slow host is not a missing prerequisite)."""
    try:
        r = measure(nbytes)
    except HostError as exc:
        return f"{'host':<11} {'?':<8} page faults: {exc}"
    coldest = r.coldest or {}
    line = f"{'host':<11} {'info':<8} page faults: {r.describe()}"
    if coldest.get("measured_at") != r.measured_at:
        line += (
            f"; coldest seen on this host: first touch {_mib_s(coldest['fresh_bytes_per_s'])}, "
            f"retouch {_mib_s(coldest['retouch_bytes_per_s'])}"
        )
    return line
