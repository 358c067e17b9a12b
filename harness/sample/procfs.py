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


def zoneinfo_low_pages(text: str) -> int:
    """The sum of every zone's ``low`` watermark in ``/proc/zoneinfo``, in pages.

    Below it kswapd wakes and reclaims (mm/vmscan.c; mm/page_alloc.c wakes kswapd when an
    allocation finds every zone under its low mark): the page cache stays until free memory
    comes down to it.

    >>> zoneinfo_low_pages("Node 0, zone  Normal\\n  pages free  900\\n        min      10\\n"
    ...                    "        low      12\\n        high     14\\n")
    12
    """
    total = 0
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0] == "low" and parts[1].isdigit():
            total += int(parts[1])
    return total
