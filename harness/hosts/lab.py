"""``harness run SUITE --inventory lab.yaml``: the suite on every lab host in parallel, results merged.

Design: the harness runs **on** each host, next to the cgroups it measures, exactly as it runs
locally; the controller deploys it, starts it, streams its progress and gathers its results.

1. ``playbooks/harness.yml`` (through ansible-runner, after a paramiko check of every host)
   collects the host's facts and installs the harness there: the source bundle, a venv with
   ``--system-site-packages`` and the dependencies, the workload binaries.
2. Per host, in parallel (``--forks``): the agent (``remote_sampler.py``) and the suite with
   the files it names are pushed by SFTP; ``python -m harness run`` starts **detached** under the
   agent's supervisor; its output is followed over an exec channel and printed with a
   ``[host]`` prefix. As soon as the remote run names its run id, the agent's sampler starts
   streaming ``/proc/meminfo`` and the run's cgroup (``harness/<run-id>``) at ``--remote-hz``.
3. A dropped connection does not stop the work on the host: the controller reconnects once,
   resumes both streams from their byte offsets and records the gap (``hosts.<h>.connection``
   in run.json and ``ssh`` rows in events.parquet). If the reconnection fails, that host is
   marked failed with the reason; the others go on.
   A host that stops answering without closing the connection (powered off, hung) is found by a
   probe after ``PROBE_AFTER_S`` quiet seconds and handled the same way.
4. The host's run directory is fetched by SFTP into ``results/<run-id>/hosts/<host>/run/``;
   every table is merged into ``results/<run-id>/<table>.parquet`` with a ``host`` column;
   ``run.json`` lists the hosts with their facts, status, error and verdict counts, and
   ``timings`` the wall seconds of the phases (``deploy_s``, ``hosts_s``: the remote runs started,
   followed and fetched; ``merge_s``).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import json
import re
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from harness import __version__
from harness.catalog import parse_labels
from harness.config.errors import load_yaml_mapping
from harness.config.suite import load_suite
from harness.errors import HarnessError
from harness.hosts.remote import RemoteJob, RemoteSampler, follow, push_agent, read_samples, sequence_gaps
from harness.hosts.ssh import SSHError, SSHHost
from harness.progress import Progress
from harness.provision import run_on_hosts
from harness.provision.inventory import Inventory, LabHost
from harness.results import RunStore, git_revision, new_run_id

TABLES = ("samples", "events", "predictions", "outcomes", "verdicts")
# seconds of silence on a host's streams before the controller asks whether the host still answers
# (SSHHost.answers): a host that dies with its TCP connection up (powered off, hung, packets
# dropped) sends no error, and its quiet stream would keep the whole lab run waiting for ever
PROBE_AFTER_S = 10.0
_RUN_LINE = re.compile(r"^harness: run (\S+) ")
_RESULTS_LINE = re.compile(r"results in (\S+)\s*$")


def suite_files(path: Path) -> dict[str, bytes]:
    """The suite (rewritten to name its files by basename) and every file it names.

    A suite names its profile(s) and pod files relative to itself; on the host they all sit in one
    directory: ``suite.yaml``, ``files/<n>-<basename>``.
    """
    data = load_yaml_mapping(path)
    base = path.resolve().parent
    out: dict[str, bytes] = {}
    names: dict[Path, str] = {}

    def ref(value: Any) -> Any:
        if not isinstance(value, str) or not value:
            return value
        p = Path(value)
        p = p if p.is_absolute() else (base / p)
        p = p.resolve()
        if p not in names:
            names[p] = f"files/{len(names)}-{p.name}"
            try:
                out[names[p]] = p.read_bytes()
            except OSError as exc:
                raise HarnessError(f"{path}: cannot read {value}: {exc.strerror}") from None
        return names[p]

    if "profile" in data:
        data["profile"] = ref(data["profile"])
    for sc in data.get("scenarios", []) or []:
        if isinstance(sc, dict):
            if "profile" in sc:
                sc["profile"] = ref(sc["profile"])
            for w in sc.get("workloads", []) or []:
                if isinstance(w, dict) and "pod" in w:
                    w["pod"] = ref(w["pod"])
    for w in data.get("workloads", []) or []:  # kind: Scenario
        if isinstance(w, dict) and "pod" in w:
            w["pod"] = ref(w["pod"])
    out["suite.yaml"] = yaml.safe_dump(data, sort_keys=False).encode()
    return out


@dataclass
class HostRun:
    name: str
    address: str
    status: str = "pending"  # complete | failed | interrupted | unreachable | not-run
    error: str | None = None
    exit_code: int | None = None
    facts: dict[str, Any] | None = None
    remote_run_id: str | None = None
    remote_run_dir: str | None = None
    remote_status: str | None = None
    verdicts_passed: int | None = None
    verdicts_total: int | None = None
    connection: list[dict[str, Any]] = field(default_factory=list)
    sampling: dict[str, Any] = field(default_factory=dict)
    elapsed_s: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "name"}


@dataclass
class LabRunResult:
    run_id: str
    run_dir: Path
    hosts: dict[str, HostRun]
    status: str = "running"
    verdicts: pd.DataFrame = field(default_factory=pd.DataFrame)

    @property
    def failed_hosts(self) -> list[HostRun]:
        return [h for h in self.hosts.values() if h.status != "complete"]

    @property
    def mismatches(self) -> int:
        if self.verdicts.empty or "passed" not in self.verdicts:
            return 0
        return int((~self.verdicts["passed"].astype(bool)).sum())


def run_on_inventory(
    suite_file: str | Path,
    inventory: Inventory,
    results_dir: Path,
    *,
    backend: str = "process",
    only: list[str] | None = None,
    limit: list[str] | None = None,
    forks: int = 5,
    sample_hz: float | None = None,
    remote_hz: float = 5.0,
    quiet: bool = False,
    stream: Any = None,
    labels: list[str] | None = None,
) -> LabRunResult:

    say = Progress(stream, quiet)
    suite_path = Path(suite_file)
    suite = load_suite(suite_path)  # validated here: a bad suite fails before any host is touched
    if only:
        for n in only:
            suite.scenario(n)
    files = suite_files(suite_path)
    run_labels = _labels(labels or [])
    hosts = inventory.select(limit)
    run_id = new_run_id(suite.name, f"lab-{backend}")
    results_dir.mkdir(parents=True, exist_ok=True)
    store = RunStore(results_dir, run_id)
    store.update(
        kind="lab",
        suite=suite.name,
        suite_file=str(suite_path),
        backend=backend,
        inventory=str(Path(inventory.source).resolve()),
        harness_version=__version__,
        git_revision=git_revision(Path(__file__).resolve().parents[2]),
        command=sys.argv,
        labels=run_labels,
        hosts={h.name: {"address": h.target.address, "status": "pending"} for h in hosts},
    )
    say(f"harness: lab run {run_id} of suite {suite.name} on {len(hosts)} host(s), backend {backend}")
    say(f"harness: results in {store.dir}")
    runs = {h.name: HostRun(h.name, h.target.address) for h in hosts}
    result = LabRunResult(run_id, store.dir, runs)
    status = "failed"
    stop = threading.Event()
    # wall seconds of each phase, in run.json: what a lab run's time goes to as hosts are added
    timings: dict[str, float] = {}
    t_phase = time.monotonic()
    try:
        say("harness: deploying the harness to the hosts (playbooks/harness.yml)")
        reports = run_on_hosts(
            inventory, "harness.yml", hosts, store.dir / "ansible" / "harness", forks=forks, say=say
        )
        timings["deploy_s"] = round(time.monotonic() - t_phase, 3)
        t_phase = time.monotonic()
        ready: list[tuple[LabHost, dict[str, Any]]] = []
        for h in hosts:
            rep = reports[h.name]
            runs[h.name].facts = rep.facts
            if rep.status in ("ok", "changed") and rep.report.get("python"):
                ready.append((h, rep.report))
            else:
                runs[h.name].status = "unreachable" if rep.status == "unreachable" else "failed"
                runs[h.name].error = rep.error or f"deployment ended with status {rep.status}"
        with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, min(forks, len(ready) or 1))) as ex:
            futs = [
                ex.submit(
                    _run_host,
                    h,
                    report,
                    runs[h.name],
                    files,
                    run_id,
                    store.dir / "hosts" / h.name,
                    backend,
                    [*(f"--scenario={x}" for x in only or []), *(f"--label={x}" for x in labels or [])],
                    sample_hz,
                    remote_hz,
                    say,
                    stop,
                )
                for h, report in ready
            ]
            try:
                for f in futs:
                    f.result()
            except KeyboardInterrupt:
                stop.set()
                for f in futs:
                    with contextlib.suppress(Exception):
                        f.result(timeout=120)
                raise
        timings["hosts_s"] = round(time.monotonic() - t_phase, 3)
        done = [r for r in runs.values() if r.status == "complete"]
        status = "complete" if len(done) == len(runs) else ("partial" if done else "failed")
    except KeyboardInterrupt:
        status = "interrupted"
        say("harness: interrupted: remote runs stopped, results kept")
    finally:
        t_phase = time.monotonic()
        result.verdicts = _merge(store, runs, suite.name)
        timings["merge_s"] = round(time.monotonic() - t_phase, 3)
        result.status = status
        store.update(
            timings=timings,
            hosts={n: r.to_dict() for n, r in runs.items()},
            verdicts_passed=int(result.verdicts["passed"].sum()) if "passed" in result.verdicts else 0,
            verdicts_total=len(result.verdicts),
        )
        store.finish(status)
    for r in runs.values():
        if r.status == "complete":
            say(
                f"harness: [{r.name}] {r.verdicts_passed}/{r.verdicts_total} verdicts match (run {r.remote_run_id})"
            )
        else:
            say(f"harness: [{r.name}] {r.status}: {r.error}")
    return result


def _labels(items: list[str]) -> dict[str, str]:

    return parse_labels(items)


def _run_host(
    h: LabHost,
    report: dict[str, Any],
    run: HostRun,
    files: dict[str, bytes],
    run_id: str,
    local: Path,
    backend: str,
    run_args: list[str],
    sample_hz: float | None,
    remote_hz: float,
    say: Progress,
    stop: threading.Event,
) -> None:
    t0 = time.monotonic()
    local.mkdir(parents=True, exist_ok=True)
    ssh = SSHHost(h.target)
    sampler: RemoteSampler | None = None
    job: RemoteJob | None = None
    home = str(report["home"])
    workdir = f"{home}/runs/{run_id}"

    def tag(msg: str) -> None:
        say(f"[{h.name}] {msg}")

    connected = False
    try:
        ssh.connect()
        connected = True
        agent = push_agent(ssh, f"{home}/agent")
        for name, data in files.items():
            remote = f"{workdir}/suite/{name}"
            ssh.mkdirs(remote.rsplit("/", 1)[0])
            ssh.put_bytes(data, remote)
        argv = [str(report["python"]), "-m", "harness", "run", f"{workdir}/suite/suite.yaml"]
        argv += ["--backend", backend, "--results", f"{home}/results"]
        argv += run_args
        if sample_hz:
            argv += ["--sample-hz", str(sample_hz)]
        job = RemoteJob(ssh, agent, f"{workdir}/job")
        job.start(argv, env={"PYTHONUNBUFFERED": "1"}, cwd=workdir)
        tag(f"started: {' '.join(argv[2:])} (pid {job.pid})")

        def on_line(raw: bytes) -> None:
            nonlocal sampler
            line = raw.decode(errors="replace").rstrip()
            tag(line)
            m = _RUN_LINE.match(line)
            if m and sampler is None:
                run.remote_run_id = m.group(1)
                sampler = RemoteSampler(
                    ssh,
                    agent,
                    f"{workdir}/sampler",
                    local / "remote_samples.jsonl",
                    hz=remote_hz,
                    cgroups={"run": f"harness/{m.group(1)}"},
                    until_job=f"{workdir}/job",
                    probe_after=PROBE_AFTER_S,
                )
                try:
                    sampler.start()
                except SSHError as exc:
                    run.sampling["error"] = exc.reason
                    sampler = None
            r = _RESULTS_LINE.search(line)
            if r:
                run.remote_run_dir = r.group(1)

        with open(local / "output.log", "ab") as sink:
            fr = follow(
                ssh,
                agent,
                job.output,
                sink,
                job_dir=job.job_dir,
                on_line=on_line,
                stop=stop,
                probe_after=PROBE_AFTER_S,
            )
        run.connection += fr.gaps
        if not fr.ended:
            if stop.is_set():
                with contextlib.suppress(SSHError):
                    job.stop()
                run.status = "interrupted"
                run.error = "interrupted by the user; the remote run was stopped"
            else:
                run.status = "failed"
                run.error = (
                    f"lost the remote run: {fr.error}; it may still run on the host (job {job.job_dir})"
                )
                return
        run.exit_code = job.exit_code()
        if run.remote_run_dir:
            ssh.get_tree(run.remote_run_dir, local / "run")
            meta = json.loads((local / "run" / "run.json").read_text())
            run.remote_status = meta.get("status")
            run.verdicts_passed = meta.get("verdicts_passed")
            run.verdicts_total = meta.get("verdicts_total")
        if run.status == "pending":
            if run.exit_code in (0, 1) and run.remote_status == "complete":
                run.status = "complete"
            else:
                run.status = "failed"
                run.error = _remote_error(local / "output.log", run.exit_code)
    except SSHError as exc:
        # unreachable: no connection at all; a command that timed out on a connected host is a failure
        run.status = "unreachable" if not connected else "failed"
        run.error = exc.reason
    finally:
        if sampler is not None:
            res = sampler.stop()
            rows, other = read_samples(local / "remote_samples.jsonl")
            run.sampling.update(
                {
                    "rows": len(rows),
                    "ticks": len({r["seq"] for r in rows}),
                    "missing_seq": sequence_gaps(rows),
                    "gaps": res.gaps,
                    "error": res.error,
                    "cgroup_events": [o for o in other if o.get("kind") == "cgroup"],
                }
            )
            run.connection += res.gaps
        run.connection += ssh.events
        ssh.close()
        run.elapsed_s = round(time.monotonic() - t0, 3)


def _remote_error(log: Path, rc: int | None) -> str:
    try:
        lines = [ln for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        lines = []
    errs = [ln for ln in lines if ln.startswith("harness: error:")]
    if errs:
        return errs[-1][len("harness: error: ") :]
    return f"the remote harness exited {rc}" + (f": {lines[-1]}" if lines else "")


def _merge(store: Any, runs: dict[str, HostRun], suite: str) -> pd.DataFrame:
    """Write merged tables (with a ``host`` column) and junit.xml; returns the merged verdicts."""
    verdicts = pd.DataFrame()
    for table in TABLES:
        frames = []
        for name in runs:
            p = store.dir / "hosts" / name / "run" / f"{table}.parquet"
            if p.exists():
                df = pd.read_parquet(p)
                df.insert(0, "host", name)
                frames.append(df)
        if table == "events":
            extra = [
                {
                    "host": r.name,
                    "source": "ssh",
                    "t_wall": e.get("wall"),
                    "kind": e.get("kind"),
                    "detail": json.dumps(e, default=str),
                }
                for r in runs.values()
                for e in r.connection
            ]
            if extra:
                frames.append(pd.DataFrame(extra))
        df = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame({"host": pd.Series(dtype=str)})
        store.write_table(table, df)
        if table == "verdicts":
            verdicts = df
    rows: list[dict[str, Any]] = []
    for name in runs:
        r, _ = read_samples(store.dir / "hosts" / name / "remote_samples.jsonl")
        rows += [{"host": name, **x} for x in r]
    store.write_table("remote_samples", rows)
    vd = []
    for rec in verdicts.to_dict("records") if not verdicts.empty else []:
        rec = {k: (list(v) if hasattr(v, "tolist") and not isinstance(v, str) else v) for k, v in rec.items()}
        rec["scenario"] = f"{rec['host']}.{rec.get('scenario')}"
        rec.setdefault("reasons", [])
        vd.append(rec)
    store.write_junit(suite, vd, sum(r.elapsed_s for r in runs.values()))
    return verdicts
