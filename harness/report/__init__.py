"""Reports of runs: one self-contained HTML file per run, with a timeline plot per scenario.

>>> from harness.report import write_run_report  # doctest: +SKIP
>>> write_run_report("results/20261123T182827Z-local-process-5fbf").html  # doctest: +SKIP
PosixPath('results/20261123T182827Z-local-process-5fbf/report/report.html')
"""

from __future__ import annotations

from harness.report.html import ReportFiles, write_run_report

__all__ = ["ReportFiles", "write_run_report"]
