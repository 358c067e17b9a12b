"""Compare two runs or two groups of runs: what changed, and does it fail the gate.

>>> from harness.compare import compare_selections  # doctest: +SKIP
>>> c = compare_selections("kubelet=1.33.*,last:10", "kubelet=1.34.*,last:10", "results")  # doctest: +SKIP
>>> c.changed, [f.summary for f in c.changes]  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from harness.catalog import Catalog, label_summary, select_runs
from harness.compare.core import CompareOptions, Comparison, Finding, compare_groups
from harness.compare.load import Group, load_group
from harness.errors import InputError
from harness.paths import results_dir

__all__ = [
    "CompareOptions",
    "Comparison",
    "Finding",
    "Group",
    "compare_groups",
    "compare_selections",
    "load_group",
    "load_selection",
]


def load_selection(
    selector: str,
    results: str | Path,
    side: str,
    *,
    cgroups: bool = True,
    catalog: Catalog | None = None,
    progress: Callable[[str], None] | None = None,
) -> Group:
    """Select (complete runs unless the selector filters on status) and load one side.

    An empty selection is bad input (InputError naming the side and the labels present).
    """
    runs = select_runs(selector, results, complete_only=True, catalog=catalog)
    if not runs:
        hint = ""
        if catalog is not None or Path(results).is_dir():
            cat = catalog or Catalog(results)
            labels = label_summary(cat.runs(), ["backend", "kubelet", "host", "cgroup", "date", "suite"])
            hint = "; labels present: " + "; ".join(f"{k}={'|'.join(v[:6])}" for k, v in labels.items())
        raise InputError(side, None, f"{selector!r} selects no complete run in {results}{hint}")
    if progress:
        progress(f"loading {side}: {len(runs)} run(s)")
    return load_group(selector, runs, cgroups=cgroups)


def compare_selections(
    base: str, new: str, results: str | Path | None = None, options: CompareOptions | None = None
) -> Comparison:
    if results is None:
        results = results_dir()
    opts = options or CompareOptions()
    opts.validate()
    cat = Catalog(results) if Path(results).is_dir() else None
    b = load_selection(base, results, "BASE", cgroups=opts.cgroups, catalog=cat)
    n = load_selection(new, results, "NEW", cgroups=opts.cgroups, catalog=cat)
    return compare_groups(b, n, opts)
