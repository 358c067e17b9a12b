"""A run's figures as Prometheus metrics (``prometheus_client``): a textfile or a push.

Naming follows Prometheus' conventions (https://prometheus.io/docs/practices/naming/): a
``harness_`` prefix, base units in the name (``_seconds``), ``_total`` for counters, ``_info``
for a metric whose value is always 1 and whose labels carry the facts.

Every sample carries the run's host facts as labels (``host``, ``kubelet_version``, ``kernel``,
``cgroup_version``, ``suite``, ``backend``) but *not* the run id: a series must continue from
one night to the next for the nightly trend (the run id is in ``harness_run_info`` only).

=============================================== ======= ==========================================
metric                                          type    labels beyond the host facts
=============================================== ======= ==========================================
``harness_run_info``                            gauge   ``run_id``, ``status``, ``started``
``harness_run_start_timestamp_seconds``         gauge
``harness_run_duration_seconds``                gauge
``harness_run_passed``                          gauge   (1 when every verdict matched)
``harness_verdicts_total``                      counter ``result`` (``pass``, ``fail``)
``harness_outcomes_total``                      counter ``outcome`` (observed, per workload)
``harness_workload_outcome``                    gauge   ``scenario``, ``workload``, ``outcome``,
                                                        ``predicted`` (1 for the observed outcome)
``harness_workload_verdict_passed``             gauge   ``scenario``, ``workload`` (1 / 0)
``harness_workload_event_seconds``              gauge   ``scenario``, ``workload``, ``outcome``:
                                                        the event since the scenario's start
``harness_workload_predicted_earliest_seconds`` gauge   ``scenario``, ``workload``
``harness_workload_predicted_latest_seconds``   gauge   ``scenario``, ``workload``
``harness_host_deviations``                     gauge   (how many)
``harness_host_deviation_info``                 gauge   ``deviation`` (the text)
``harness_evictions_total``                     counter (kubelet ``Evicted`` events)
``harness_eviction_stats_age_seconds``          gauge   ``scenario``, ``workload``, ``pod``
=============================================== ======= ==========================================

The counters count what happened in this one run: they restart at every run, which Prometheus
treats like a process restart.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from harness.errors import HarnessError, InputError
from harness.export.figures import HOST_LABELS, RunFigures
from harness.results import atomic_write

FORMATS = ("openmetrics", "prometheus")
JOB = "harness"


class RunCollector(Collector):
    """Yields the metric families of one run (a fresh registry per export, no global state)."""

    def __init__(self, fig: RunFigures) -> None:
        self.fig = fig

    def collect(self) -> Iterator[Metric]:
        f = self.fig
        host = list(HOST_LABELS.values())
        hv = [f.labels.get(k, "") for k in host]

        def gauge(name: str, doc: str, extra: list[str], unit: str = "") -> GaugeMetricFamily:
            return GaugeMetricFamily(name, doc, labels=[*host, *extra], unit=unit)

        info = gauge("harness_run_info", "The run exported (value 1).", ["run_id", "status", "started"])
        info.add_metric([*hv, f.run_id, f.status, f.started], 1)
        yield info
        if f.start_epoch is not None:
            m = gauge("harness_run_start_timestamp_seconds", "When the run started (Unix time).", [])
            m.add_metric(hv, f.start_epoch)
            yield m
        if f.duration_s is not None:
            m = gauge("harness_run_duration_seconds", "How long the run took.", [])
            m.add_metric(hv, f.duration_s)
            yield m
        m = gauge("harness_run_passed", "1 when every verdict of the run matched the model.", [])
        m.add_metric(hv, 1.0 if f.verdicts_failed == 0 else 0.0)
        yield m
        c = CounterMetricFamily(
            "harness_verdicts", "Verdicts of the run by result.", labels=[*host, "result"]
        )
        c.add_metric([*hv, "pass"], f.verdicts_passed)
        c.add_metric([*hv, "fail"], f.verdicts_failed)
        yield c
        c = CounterMetricFamily(
            "harness_outcomes", "Observed outcomes of the run's workloads.", labels=[*host, "outcome"]
        )
        for outcome, n in sorted(Counter(w.observed for w in f.workloads).items()):
            c.add_metric([*hv, outcome], n)
        yield c
        sw = ["scenario", "workload"]
        outc = gauge(
            "harness_workload_outcome",
            "The observed outcome of a workload (value 1; the label says which).",
            [*sw, "outcome", "predicted"],
        )
        passed = gauge("harness_workload_verdict_passed", "1 when the workload's verdict matched.", sw)
        event = gauge(
            "harness_workload_event_seconds",
            "When the workload's observed outcome happened, since the scenario's start.",
            [*sw, "outcome"],
        )
        early = gauge(
            "harness_workload_predicted_earliest_seconds", "Start of the model's window for the outcome.", sw
        )
        late = gauge(
            "harness_workload_predicted_latest_seconds", "End of the model's window for the outcome.", sw
        )
        hi = host.index("host")
        for w in f.workloads:
            whv = [*hv[:hi], w.host, *hv[hi + 1 :]] if w.host else hv
            key = [*whv, w.scenario, w.workload]
            outc.add_metric([*key, w.observed, w.predicted], 1)
            passed.add_metric(key, 1.0 if w.passed else 0.0)
            if w.event_s is not None:
                event.add_metric([*key, w.observed], w.event_s)
            if w.predicted_earliest_s is not None:
                early.add_metric(key, w.predicted_earliest_s)
            if w.predicted_latest_s is not None:
                late.add_metric(key, w.predicted_latest_s)
        yield from (outc, passed, event, early, late)
        m = gauge("harness_host_deviations", "Host deviations recorded by the run.", [])
        m.add_metric(hv, len(f.deviations))
        yield m
        m = gauge("harness_host_deviation_info", "A host deviation of the run (value 1).", ["deviation"])
        for d in f.deviations:
            m.add_metric([*hv, d], 1)
        yield m
        c = CounterMetricFamily("harness_evictions", "Kubelet Evicted events seen in the run.", labels=host)
        c.add_metric(hv, len(f.evictions))
        yield c
        m = gauge(
            "harness_eviction_stats_age_seconds",
            "Age of the kubelet's last /stats/summary when it evicted a pod.",
            ["scenario", "workload", "pod"],
        )
        for e in f.evictions:
            if e.stats_age_s is not None:
                ehv = [*hv[:hi], e.host, *hv[hi + 1 :]] if e.host else hv
                m.add_metric([*ehv, e.scenario, e.workload, e.pod], e.stats_age_s)
        yield m


def registry_of(fig: RunFigures) -> CollectorRegistry:
    reg = CollectorRegistry(auto_describe=False)
    reg.register(RunCollector(fig))
    return reg


def render(fig: RunFigures, fmt: str = "openmetrics") -> bytes:
    """The exposition text: ``openmetrics`` (ends with ``# EOF``) or ``prometheus`` (text 0.0.4)."""
    if fmt == "openmetrics":
        # lazy: prometheus_client loads only when metrics are exported
        from prometheus_client.openmetrics.exposition import generate_latest as om

        return bytes(om(registry_of(fig)))
    if fmt == "prometheus":
        # lazy: prometheus_client loads only when metrics are exported
        from prometheus_client.exposition import generate_latest

        return bytes(generate_latest(registry_of(fig)))
    raise InputError("--format", None, f"{fmt!r}: expected one of {', '.join(FORMATS)}")


def write_textfile(fig: RunFigures, path: str | Path, fmt: str = "openmetrics") -> Path:
    """Write atomically (temp file in the same folder, fsync, rename): node_exporter's textfile
    collector never reads half a file. The temp name does not end in ``.prom``, so the collector
    ignores it."""

    p = Path(path)
    if not p.parent.is_dir():
        raise InputError(str(p), None, f"folder {p.parent} does not exist")
    data = render(fig, fmt)
    try:
        atomic_write(p, data)
        os.chmod(p, 0o644)
    except OSError as exc:
        raise HarnessError(f"cannot write {p}: {exc}") from None
    return p


def grouping_key(fig: RunFigures) -> dict[str, str]:
    """The Pushgateway group of a run: one per host, suite and backend, so each night's push
    replaces the previous night's (a workload that disappeared does not linger)."""
    return {
        "instance": fig.labels.get("host") or "unknown",
        "suite": fig.labels.get("suite") or "unknown",
        "backend": fig.labels.get("backend") or "unknown",
    }


def push(fig: RunFigures, url: str, *, job: str = JOB, timeout: float = 30.0) -> dict[str, Any]:
    """PUT the run's metrics to a Pushgateway (replacing its group); returns the group pushed."""
    # lazy: prometheus_client loads only when metrics are exported
    from prometheus_client import push_to_gateway

    key = grouping_key(fig)
    try:
        push_to_gateway(url, job=job, registry=registry_of(fig), grouping_key=key, timeout=timeout)
    except OSError as exc:
        raise HarnessError(f"push to {url} failed: {exc}") from None
    return {"job": job, **key}
