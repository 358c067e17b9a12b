"""Provisioning of lab hosts: inventory, playbooks through ansible-runner, host facts.

``provision()`` is what ``harness provision INVENTORY`` runs:

1. load and check the inventory (``inventory.py``) and the kubelet profiles it names;
2. check every host over SSH with paramiko first (host key against the inventory's
   known_hosts, key authentication): a host that cannot be reached is reported in one line and
   left out, the others go on;
3. build what the playbook's roles copy (image archives, the harness bundle, a kubelet the
   harness built for ``kubelet_build_version``);
4. run the playbook with ansible-runner, its private data directory and artifacts under
   ``results/<run-id>/ansible/<playbook>/``;
5. write ``results/<run-id>/run.json``: per host its status, changed tasks, error and facts.
"""

from __future__ import annotations

import concurrent.futures
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.cluster.build import ensure_built
from harness.config.kubelet import load_profile
from harness.errors import HarnessError, InputError
from harness.hosts.ssh import SSHError, SSHHost
from harness.provision.bundle import build_bundle, image_archives
from harness.provision.facts import to_node_facts
from harness.provision.inventory import Inventory, LabHost, load_inventory
from harness.provision.runner import (
    HostReport,
    PlaybookResult,
    playbook_roles,
    resolve_playbook,
    run_playbook,
)
from harness.provision.wheelhouse import build_wheelhouse
from harness.results import RunStore, new_run_id

__all__ = [
    "HostReport",
    "Inventory",
    "PlaybookResult",
    "ProvisionResult",
    "load_inventory",
    "preflight",
    "provision",
    "role_inputs",
]

Say = Callable[[str], None]


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def preflight(hosts: list[LabHost], forks: int = 5, say: Say | None = None) -> dict[str, str]:
    """Connect to every host (paramiko, in parallel); ``{host: one-line error}`` for those that fail."""
    say = say or (lambda _m: None)
    errors: dict[str, str] = {}

    def check(h: LabHost) -> tuple[str, str | None]:
        ssh = SSHHost(h.target)
        try:
            ssh.connect()
            ssh.run("true", timeout=h.target.connect_timeout + 10, check=True)
            return h.name, None
        except SSHError as exc:
            return h.name, exc.reason
        finally:
            ssh.close()

    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, min(forks, len(hosts) or 1))) as ex:
        for name, err in ex.map(check, hosts):
            if err is not None:
                errors[name] = err
                say(f"  [{name}] cannot be used: {err}")
    return errors


def role_inputs(
    playbook: Path, hosts: list[LabHost], say: Say | None = None
) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """Extra variables and per-host variables the playbook's roles need from the controller."""
    say = say or (lambda _m: None)
    roles = playbook_roles(playbook)
    extravars: dict[str, Any] = {}
    per_host: dict[str, dict[str, Any]] = {}
    if "images" in roles:
        extravars["images_archives"] = image_archives()
    if "harness" in roles:
        bundle = build_bundle()
        say(f"harness: bundle {bundle.name}")
        extravars["harness_bundle"] = str(bundle)
        if any(h.vars.get("harness_offline") for h in hosts):
            wheels = str(build_wheelhouse(say=say))
            for h in hosts:
                if h.vars.get("harness_offline"):
                    per_host.setdefault(h.name, {})["harness_wheelhouse"] = wheels
    if "cluster" in roles:
        for h in hosts:
            version = h.vars.get("cluster_version") or h.vars.get("kubelet_build_version")
            if not version:
                raise InputError(inventory_source(h), f"hosts.{h.name}.vars.kubelet_build_version", "missing")
            res = ensure_built(str(version), components=("kubelet", "kube-apiserver"), progress=say)
            per_host.setdefault(h.name, {})["cluster_build_dir"] = str(res.build.root)
    if "kubelet" in roles:
        for h in hosts:
            hv: dict[str, Any] = {}
            profile = h.vars.get("kubelet_profile")
            if profile:
                load_profile(profile)  # a clear error naming the profile file and field
            version = h.vars.get("kubelet_build_version")
            if version and not h.vars.get("kubelet_binary_src"):
                res = ensure_built(str(version), components=("kubelet",), progress=say)
                hv["kubelet_binary_src"] = str(res.bin_dir / "kubelet")
            per_host.setdefault(h.name, {}).update(hv)
    return extravars, per_host


def inventory_source(h: LabHost) -> str:
    return f"inventory of {h.name}"


@dataclass
class ProvisionResult:
    run_id: str
    run_dir: Path
    playbook: str
    hosts: dict[str, HostReport] = field(default_factory=dict)
    status: str = "running"

    @property
    def failed(self) -> list[HostReport]:
        return [h for h in self.hosts.values() if h.status in ("failed", "unreachable")]


def run_on_hosts(
    inventory: Inventory,
    playbook: str,
    hosts: list[LabHost],
    private_dir: Path,
    *,
    forks: int = 5,
    say: Say | None = None,
    check: bool = False,
    diff: bool = False,
) -> dict[str, HostReport]:
    """Preflight, build role inputs, run the playbook; a report for every host (never raises for one)."""
    say = say or (lambda _m: None)
    path = resolve_playbook(playbook)
    reports = {h.name: HostReport(h.name, status="not-run") for h in hosts}
    bad = preflight(hosts, forks, say)
    for name, err in bad.items():
        reports[name].status = "unreachable"
        reports[name].error = err
    good = [h for h in hosts if h.name not in bad]
    if not good:
        return reports
    extravars, per_host = role_inputs(path, good, say)
    res = run_playbook(
        inventory,
        path,
        good,
        private_dir,
        extravars=extravars,
        extra_host_vars=per_host,
        forks=forks,
        say=say,
        check=check,
        diff=diff,
    )
    reports.update(res.hosts)
    return reports


def provision(
    inventory: Inventory,
    results_dir: Path,
    *,
    playbook: str = "site.yml",
    limit: list[str] | None = None,
    forks: int = 5,
    say: Say | None = None,
    check: bool = False,
    diff: bool = False,
) -> ProvisionResult:

    say = say or _stderr
    path = resolve_playbook(playbook)
    hosts = inventory.select(limit)
    if not hosts:
        raise InputError(inventory.source, "hosts", "no host selected")
    run_id = new_run_id("provision", path.stem)
    results_dir.mkdir(parents=True, exist_ok=True)
    store = RunStore(results_dir, run_id)
    store.update(
        kind="provision-check" if check else "provision",
        inventory=str(Path(inventory.source).resolve()),
        playbook=path.name,
        limit=limit or [],
        command=sys.argv,
        hosts={
            h.name: {"address": h.target.address, "port": h.target.port, "status": "pending"} for h in hosts
        },
    )
    result = ProvisionResult(run_id, store.dir, path.name)
    say(f"harness: provisioning {len(hosts)} host(s) with {path.name}; results in {store.dir}")
    status = "failed"
    try:
        result.hosts = run_on_hosts(
            inventory,
            str(path),
            hosts,
            store.dir / "ansible" / path.stem,
            forks=forks,
            say=say,
            check=check,
            diff=diff,
        )
        status = (
            "complete" if not result.failed else ("failed" if len(result.failed) == len(hosts) else "partial")
        )
    except KeyboardInterrupt:
        status = "interrupted"
        raise
    except HarnessError:
        status = "failed"
        raise
    finally:
        result.status = status
        store.update(hosts={name: _host_record(inventory, name, rep) for name, rep in result.hosts.items()})
        store.finish(status)
    return result


def _host_record(inventory: Inventory, name: str, rep: HostReport) -> dict[str, Any]:
    h = inventory.hosts[name]
    rec: dict[str, Any] = {"address": h.target.address, "port": h.target.port, **rep.to_dict()}
    if rep.facts is not None:
        rec["facts"] = rep.facts
        try:
            nf, notes = to_node_facts(rep.facts, f"facts of {name}")
            rec["node"] = nf.model_dump(by_alias=True)
            if notes:
                rec["facts_notes"] = notes
        except HarnessError as exc:
            rec["facts_notes"] = [str(exc)]
    return rec
