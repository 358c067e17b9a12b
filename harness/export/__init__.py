"""Export a run's figures to the monitoring SREs already run (Prometheus).

>>> from harness.export import run_metrics, render  # doctest: +SKIP
>>> print(render(run_metrics("results/20261123T183957Z-local-process-8ad9"), "prometheus"))  # doctest: +SKIP
"""

from __future__ import annotations

from harness.export.figures import RunFigures, run_figures
from harness.export.openmetrics import (
    grouping_key,
    push,
    registry_of,
    render,
    write_textfile,
)

__all__ = ["RunFigures", "grouping_key", "push", "registry_of", "render", "run_figures", "write_textfile"]
