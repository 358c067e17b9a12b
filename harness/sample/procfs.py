"""Pure parsers for the ``/proc`` files the sampler reads."""

from __future__ import annotations

from collections.abc import Iterable

#: The /proc/meminfo fields a node row carries (kubelet/cAdvisor use MemTotal; MemAvailable
#: is what the kernel itself estimates as available).
MEMINFO_FIELDS = ("MemTotal", "MemFree", "MemAvailable", "Cached", "Buffers")


def parse_meminfo(text: str, fields: Iterable[str] | None = None) -> dict[str, int]:
    """Parse ``/proc/meminfo`` into bytes (``kB`` values are multiplied by 1024).

    ``fields`` restricts the result to those names (faster when sampling).

    >>> parse_meminfo("MemTotal:       24576000 kB\\nHugePages_Total:       0\\n")
    {'MemTotal': 25165824000, 'HugePages_Total': 0}
    """
    wanted = set(fields) if fields is not None else None
    out: dict[str, int] = {}
    for line in text.splitlines():
        name, sep, rest = line.partition(":")
        if not sep or (wanted is not None and name not in wanted):
            continue
        parts = rest.split()
        if not parts:
            continue
        value = int(parts[0])
        if len(parts) > 1 and parts[1] == "kB":
            value *= 1024
        out[name] = value
    return out
