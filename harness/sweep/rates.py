"""Leak rates: parsing, printing, and rewriting a scenario's leak for a given rate.

A rate is bytes per second over all processes of a workload: ``chunk × processes / interval``
(``harness.config.suite.Leak.rate_bytes_per_s``).

Rewriting policy (``leak_for_rate``): the scenario's ``interval`` is kept and the ``chunk`` is
scaled, so the leak keeps the time resolution the scenario was written with (and the model's
and the program's chunk schedules stay aligned with the scenario's deadline). The chunk is a
whole number of bytes; it does not need to be a page multiple (workloads/README.md: the
program makes exactly ``ceil(allocated / page)`` pages resident). Two limits of the leak
program bend the policy:

* a chunk below one page (4 KiB) would make the resident set grow in page steps, not at
  the requested rate: the chunk is set to one page and the interval lengthened instead;
* a chunk above ``MAX_CHUNK`` (64 MiB) makes the leak a series of big jumps: the chunk is
  capped and the interval shortened, down to ``MIN_INTERVAL_S`` (1 ms; below that the program
  spends its time printing one JSON line per chunk).

Everything else of the leak (max, start delay, hold, processes, touch, mode) is unchanged.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

from harness.config.suite import Leak, Scenario, Workload
from harness.errors import InputError

PAGE = 4096
MAX_CHUNK = 64 << 20
MIN_INTERVAL_S = 0.001
MAX_INTERVAL_S = 10.0

_UNITS = {
    "": 1,
    "b": 1,
    "k": 1000,
    "kb": 1000,
    "m": 1000**2,
    "mb": 1000**2,
    "g": 1000**3,
    "gb": 1000**3,
    "ki": 1024,
    "kib": 1024,
    "mi": 1024**2,
    "mib": 1024**2,
    "gi": 1024**3,
    "gib": 1024**3,
}
_RATE = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)(?:e([+-]?\d+))?\s*([a-zA-Z]*)\s*(/\s*s)?\s*$")


def parse_rate(text: str, *, what: str = "rate") -> float:
    """Bytes per second from ``16Mi/s``, ``16MiB/s``, ``1.5Gi/s``, ``500k/s`` or ``1048576``.

    Binary suffixes (Ki, Mi, Gi, optionally followed by B) are powers of 1024, decimal ones
    (k, M, G, optionally with B) powers of 1000, as in Kubernetes quantities; a plain number is
    bytes per second. ``/s`` is optional. ValueError names the bad text.
    """
    m = _RATE.match(text)
    if not m:
        raise ValueError(f"invalid {what} {text!r} (expected e.g. 16Mi/s, 10MiB/s or bytes per second)")
    num = float(m.group(1)) * (10 ** int(m.group(2)) if m.group(2) else 1)
    unit = m.group(3).lower()
    if unit not in _UNITS:
        raise ValueError(
            f"invalid {what} {text!r}: unknown unit {m.group(3)!r} (use Ki, Mi, Gi, k, M, G, with or without B)"
        )
    value = num * _UNITS[unit]
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"invalid {what} {text!r}: must be greater than 0")
    return value


def parse_rate_range(text: str) -> tuple[float, float]:
    """``LOW:HIGH`` (each as :func:`parse_rate`), LOW < HIGH."""
    if text.count(":") != 1:
        raise ValueError(f"invalid rate range {text!r} (expected LOW:HIGH, e.g. 4Mi/s:64Mi/s)")
    lo_s, hi_s = text.split(":")
    lo = parse_rate(lo_s, what="low rate")
    hi = parse_rate(hi_s, what="high rate")
    if not lo < hi:
        raise ValueError(f"invalid rate range {text!r}: LOW must be below HIGH")
    return lo, hi


def format_rate(rate: float) -> str:
    """``16.0 MiB/s``, ``512 KiB/s``, ``1.50 GiB/s`` (3 significant digits)."""
    for unit, div in (("GiB/s", 1 << 30), ("MiB/s", 1 << 20), ("KiB/s", 1 << 10)):
        if rate >= div:
            v = rate / div
            return f"{v:.3g} {unit}" if v < 100 else f"{v:.0f} {unit}"
    return f"{rate:.3g} B/s"


def leak_for_rate(leak: Leak, rate: float) -> Leak:
    """The same leak at ``rate`` bytes/s (module docstring: keep the interval, scale the chunk)."""
    if not (math.isfinite(rate) and rate > 0):
        raise ValueError(f"rate must be a positive number of bytes per second, got {rate!r}")
    procs = leak.processes
    interval = leak.interval_s if leak.interval_s > 0 else 0.1
    chunk = rate * interval / procs
    if chunk < PAGE:
        chunk = PAGE
        interval = chunk * procs / rate
        if interval > MAX_INTERVAL_S:
            raise ValueError(
                f"rate {format_rate(rate)} is too slow for the leak program: one page per process every "
                f"{interval:.0f} s (at most {MAX_INTERVAL_S:g} s)"
            )
    elif chunk > MAX_CHUNK:
        chunk = MAX_CHUNK
        interval = chunk * procs / rate
        if interval < MIN_INTERVAL_S:
            raise ValueError(
                f"rate {format_rate(rate)} is too fast for the leak program: a {MAX_CHUNK >> 20} MiB chunk "
                f"every {interval * 1000:.2f} ms (at least {MIN_INTERVAL_S * 1000:g} ms)"
            )
    else:
        chunk = round(chunk)
        interval = chunk * procs / rate  # exact rate despite the whole-byte chunk
    # interval is passed to the program in ms with 3 decimals (Leak.leak_args)
    interval = round(interval * 1000, 3) / 1000
    return leak.model_copy(update={"chunk_bytes": int(chunk), "interval_s": interval})


def leaking_workload(scenario: Scenario, name: str | None, source: str) -> Workload:
    """The workload whose rate the sweep varies: ``name``, or the only one that leaks without a max."""
    if name is not None:
        for w in scenario.workloads:
            if w.name == name:
                return w
        raise InputError(
            source,
            f"scenario {scenario.name}",
            f"no workload named {name!r}; have " + ", ".join(w.name for w in scenario.workloads),
        )
    unbounded = [w for w in scenario.workloads if w.leak.max_bytes == 0 and w.leak.mode == "anon"]
    if len(scenario.workloads) == 1:
        return scenario.workloads[0]
    if len(unbounded) == 1:
        return unbounded[0]
    raise InputError(
        source,
        f"scenario {scenario.name}",
        "cannot tell which workload leaks ("
        + ", ".join(w.name for w in scenario.workloads)
        + "): use --workload",
    )


def scenario_for_rate(scenario: Scenario, workload: str, rate: float) -> Scenario:
    """A copy of the scenario with ``workload`` leaking at ``rate``; profile and node are kept."""
    workloads = []
    for w in scenario.workloads:
        if w.name == workload:
            w = w.model_copy(update={"leak": leak_for_rate(w.leak, rate)})
        workloads.append(w)
    return scenario.model_copy(update={"workloads": workloads})


def axis_rate(trial: Mapping[str, Any]) -> float:
    """The rate a trial is placed at in the fit and the plot: what its leak really allocated
    (``rate_achieved``, from the program's own chunk lines), its label when that is unknown.

    A label the host could not produce (its page faults are slower) says nothing about the
    kubelet or the kernel at that rate; the achieved rate is the one the outcome belongs to."""
    got = trial.get("rate_achieved")
    return float(got) if got is not None and got > 0 else float(trial["rate"])
