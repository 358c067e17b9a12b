"""``harness export`` into the real Prometheus stack from Debian, on loopback.

The test starts Debian's ``prometheus``, ``prometheus-pushgateway`` and
``prometheus-node-exporter`` (textfile collector only) on free 127.0.0.1 ports, each with its
own temp data folder, and stops them by pid. It exports the recorded runs of
tests/fixtures/runs/: one kubelet run is pushed to the Pushgateway, the local process run is
written as a textfile for node_exporter. Prometheus scrapes both; the test queries its HTTP API
(``/api/v1/query``) and asserts that the values equal the run's own tables.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures" / "runs"
PUSHED = "20261123T184541Z-kubelet-kubernetes-28da"  # a real eviction, stats summaries, one failed verdict
TEXTFILE = "20261123T183957Z-local-process-8ad9"  # kernel OOM kills, a host deviation

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

# every PromQL query the test runs (reported in the README's Prometheus section)
QUERIES = {
    "verdicts": 'harness_verdicts_total{{job="{job}",result="{result}"}}',
    "outcome": 'harness_workload_outcome{{job="{job}",scenario="{scenario}",workload="{workload}"}} == 1',
    "event": 'harness_workload_event_seconds{{job="{job}",scenario="{scenario}",workload="{workload}"}}',
    "passed": 'harness_workload_verdict_passed{{job="{job}",scenario="{scenario}",workload="{workload}"}}',
    "stats_age": 'harness_eviction_stats_age_seconds{{job="{job}"}}',
    "deviations": 'harness_host_deviations{{job="{job}"}}',
    "info": 'harness_run_info{{job="{job}"}}',
    "failed_workloads": 'count by (host, suite) (harness_workload_verdict_passed{{job="{job}"}} == 0)',
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get(url: str, timeout: float = 10) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return bytes(r.read())


def _wait_http(url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"{proc.args[0]} exited {proc.returncode}: {log.read_text()[-2000:]}")
        with contextlib.suppress(OSError):
            _get(url, 2)
            return
        time.sleep(0.2)
    raise AssertionError(f"{url} did not answer in {timeout}s: {log.read_text()[-2000:]}")


class Daemons:
    """Processes started by this test, stopped by their pid (SIGTERM, then SIGKILL)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, name: str, argv: list[str], ready_url: str) -> subprocess.Popen[bytes]:
        exe = shutil.which(argv[0])
        if exe is None:
            pytest.fail(f"{argv[0]} is missing: run scripts/setup.sh (Debian package {name})")
        log = self.root / f"{name}.log"
        with open(log, "wb") as out:
            proc = subprocess.Popen([exe, *argv[1:]], stdout=out, stderr=subprocess.STDOUT, cwd=self.root)
        self.procs.append(proc)
        _wait_http(ready_url, proc, log)
        return proc

    def stop(self) -> None:
        for p in reversed(self.procs):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait(timeout=10)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    root = tmp_path_factory.mktemp("prom")
    textdir = root / "textfile"
    textdir.mkdir()
    ports = {k: _free_port() for k in ("prometheus", "pushgateway", "node_exporter")}
    pg = f"127.0.0.1:{ports['pushgateway']}"
    ne = f"127.0.0.1:{ports['node_exporter']}"
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "scrape_configs": [
            {"job_name": "pushgateway", "honor_labels": True, "static_configs": [{"targets": [pg]}]},
            {"job_name": "node", "static_configs": [{"targets": [ne]}]},
        ],
    }
    (root / "prometheus.yml").write_text(json.dumps(config))  # JSON is YAML
    d = Daemons(root)
    try:
        d.start(
            "prometheus-pushgateway",
            ["prometheus-pushgateway", f"--web.listen-address={pg}"],
            f"http://{pg}/-/ready",
        )
        d.start(
            "prometheus-node-exporter",
            [
                "prometheus-node-exporter",
                f"--web.listen-address={ne}",
                "--collector.disable-defaults",
                "--collector.textfile",
                f"--collector.textfile.directory={textdir}",
            ],
            f"http://{ne}/metrics",
        )
        prom = f"127.0.0.1:{ports['prometheus']}"
        (root / "tsdb").mkdir()
        d.start(
            "prometheus",
            [
                "prometheus",
                f"--config.file={root / 'prometheus.yml'}",
                f"--storage.tsdb.path={root / 'tsdb'}",
                f"--web.listen-address={prom}",
                "--web.console.templates=/dev/null",
                "--web.console.libraries=/dev/null",
            ],
            f"http://{prom}/-/ready",
        )
        yield {
            "root": root,
            "textdir": textdir,
            "pushgateway": f"http://{pg}",
            "prometheus": f"http://{prom}",
        }
    finally:
        d.stop()


def _harness(*args: str) -> subprocess.CompletedProcess[str]:
    r = subprocess.run(
        [sys.executable, "-m", "harness", *args], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert r.returncode == 0, r.stderr
    return r


def _query(prom: str, q: str) -> list[dict[str, Any]]:
    url = f"{prom}/api/v1/query?" + urllib.parse.urlencode({"query": q})
    body = json.loads(_get(url))
    assert body["status"] == "success", body
    return list(body["data"]["result"])


def _wait_query(prom: str, q: str, want: int, timeout: float = 30) -> list[dict[str, Any]]:
    """The query's result once Prometheus has scraped what it needs (``want`` series)."""
    deadline = time.monotonic() + timeout
    res: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        res = _query(prom, q)
        if len(res) >= want:
            return res
        time.sleep(0.5)
    raise AssertionError(f"{q}: {len(res)} series after {timeout}s, expected {want}: {res}")


def _check_run(prom: str, job: str, run: Path) -> None:
    v = pd.read_parquet(run / "verdicts.parquet")
    meta = json.loads((run / "run.json").read_text())
    info = _wait_query(prom, QUERIES["info"].format(job=job), 1)
    assert info[0]["metric"]["run_id"] == meta["run_id"]
    assert info[0]["metric"]["kernel"] == meta["host"]["kernel"]
    assert info[0]["metric"]["cgroup_version"] == f"v{meta['host']['cgroupVersion']}"
    for result, want in (("pass", int(v["passed"].sum())), ("fail", int((~v["passed"]).sum()))):
        got = _wait_query(prom, QUERIES["verdicts"].format(job=job, result=result), 1)
        assert float(got[0]["value"][1]) == want, (job, result)
    for r in v.to_dict("records"):
        labels = {"job": job, "scenario": r["scenario"], "workload": r["workload"]}
        outcome = _wait_query(prom, QUERIES["outcome"].format(**labels), 1)
        assert [o["metric"]["outcome"] for o in outcome] == [r["observed"]], labels
        assert outcome[0]["metric"]["predicted"] == r["predicted"]
        passed = _wait_query(prom, QUERIES["passed"].format(**labels), 1)
        assert float(passed[0]["value"][1]) == float(bool(r["passed"])), labels
        t = r["observed_t_s"]
        event = _query(prom, QUERIES["event"].format(**labels))
        if t is None or pd.isna(t):
            assert event == [], labels
        else:
            assert len(event) == 1 and event[0]["metric"]["outcome"] == r["observed"], labels
            assert float(event[0]["value"][1]) == pytest.approx(float(t), abs=1e-9), labels
    devs = _wait_query(prom, QUERIES["deviations"].format(job=job), 1)
    assert float(devs[0]["value"][1]) == len(meta["host_deviations"]), job


def test_push_and_textfile_scraped_by_prometheus(stack: dict[str, Any], tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    for name in (PUSHED, TEXTFILE):
        shutil.copytree(FIXTURES / name, runs / name)
    _harness("export", str(runs / PUSHED), "--pushgateway", stack["pushgateway"])
    prom_file = stack["textdir"] / "harness.prom"
    _harness("export", str(runs / TEXTFILE), "--format", "prometheus", "-o", str(prom_file))
    assert not [p for p in stack["textdir"].iterdir() if p.name != "harness.prom"]  # no temp file left

    prom = stack["prometheus"]
    _check_run(prom, "harness", runs / PUSHED)  # honor_labels: the pushed job
    _check_run(prom, "node", runs / TEXTFILE)

    # the kubelet's stats age at the eviction, from the Evicted event and the last summary before it
    ev = pd.read_parquet(runs / PUSHED / "events.parquet")
    evicted = ev[(ev["source"] == "kubelet") & (ev["kind"] == "Evicted")].iloc[0]
    stamps = pd.to_datetime(ev.loc[ev["kind"] == "summary", "stats_time"], utc=True)
    last = stamps[stamps <= pd.Timestamp(evicted["t_wall"], unit="s", tz="UTC")].max()
    want_age = evicted["t_wall"] - last.timestamp()
    age = _wait_query(prom, QUERIES["stats_age"].format(job="harness"), 1)
    assert age[0]["metric"]["workload"] == "slowleak"
    assert float(age[0]["value"][1]) == pytest.approx(want_age, abs=1e-6)
    assert _query(prom, QUERIES["stats_age"].format(job="node")) == []  # no kubelet in a process run

    # an aggregate across series: which host/suite has failing workloads
    failed = _wait_query(prom, QUERIES["failed_workloads"].format(job="harness"), 1)
    assert float(failed[0]["value"][1]) == 1 and failed[0]["metric"]["suite"] == "kubelet"
    assert _query(prom, QUERIES["failed_workloads"].format(job="node")) == []


def test_openmetrics_textfile_is_read_by_node_exporter(stack: dict[str, Any], tmp_path: Path) -> None:
    """The default format (OpenMetrics) is also accepted by node_exporter's textfile collector."""
    path = stack["textdir"] / "harness-om.prom"
    run = FIXTURES / "20261123T184050Z-local-docker-7953"
    try:
        _harness("export", str(run), "-o", str(path))
        assert path.read_text().rstrip().endswith("# EOF")
        targets = json.loads(_get(stack["prometheus"] + "/api/v1/targets"))["data"]["activeTargets"]
        url = next(t["scrapeUrl"] for t in targets if t["labels"]["job"] == "node")
        text = _get(url).decode()
        assert "node_textfile_scrape_error 0" in text, text[-2000:]
        assert 'harness_run_info{backend="docker"' in text
    finally:
        path.unlink(missing_ok=True)


def test_dashboard_queries_run_on_prometheus(stack: dict[str, Any], tmp_path: Path) -> None:
    """Every PromQL query of dashboards/nightly.json is valid and finds the exported series."""
    dash = json.loads((REPO / "dashboards" / "nightly.json").read_text())
    exprs = [t["expr"] for p in dash["panels"] for t in p["targets"]]
    exprs += [a["expr"] for a in dash["annotations"]["list"] if a.get("expr")]
    run = tmp_path / PUSHED
    shutil.copytree(FIXTURES / PUSHED, run)
    _harness("export", str(run), "--pushgateway", stack["pushgateway"])
    for v in dash["templating"]["list"]:
        if v["type"] == "query":  # label_values(metric, label): the metric must have that label
            metric, label = v["query"]["query"].removeprefix("label_values(").rstrip(")").split(", ")
            series = _wait_query(stack["prometheus"], metric, 1)
            assert any(s["metric"].get(label) for s in series), v["name"]
    for e in exprs:
        q = e
        for name in ("host", "suite", "backend", "kubelet", "scenario"):
            q = q.replace(f"${name}", ".*")
        res = _query(stack["prometheus"], q)  # a bad query fails here (status error)
        if "stats_age" in e or "changes(" in e:
            continue  # present in kubelet runs only / needs a history
        assert res, f"no series for {e}"
