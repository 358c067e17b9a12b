"""``harness provision INVENTORY`` and the lab side of ``harness run SUITE --inventory``."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from harness.commands.runs import echo_run_summary
from harness.errors import HostError


@click.command("provision")
@click.argument("inventory_file", metavar="INVENTORY", type=click.Path(dir_okay=False))
@click.option(
    "--playbook",
    default="site.yml",
    show_default=True,
    help="A playbook of playbooks/ (site.yml, facts.yml, harness.yml, teardown.yml) or a path.",
)
@click.option("--limit", multiple=True, help="Only these hosts or groups (comma-separated or repeated).")
@click.option(
    "--forks", type=click.IntRange(1, 100), default=5, show_default=True, help="Hosts worked on at once."
)
@click.option(
    "--results",
    "results_dir",
    type=click.Path(file_okay=False),
    default="results",
    envvar="HARNESS_RESULTS",
    show_envvar=True,
    show_default=True,
    help="Folder receiving results/<run-id>/ (run.json with each host's status and facts, ansible/ artifacts).",
)
@click.option("-q", "--quiet", is_flag=True, help="No live progress.")
@click.option("--check", is_flag=True, help="Ansible check mode: report what would change, change nothing.")
@click.option(
    "--diff", is_flag=True, help="Show the diff of every file changed (or, with --check, to change)."
)
def provision_cmd(
    inventory_file: str,
    playbook: str,
    limit: tuple[str, ...],
    forks: int,
    results_dir: str,
    quiet: bool,
    check: bool,
    diff: bool,
) -> None:
    """Provision lab hosts with Ansible (through ansible-runner).

    Every host is first checked over SSH (host key against the inventory's known_hosts, key
    authentication); a host that cannot be used is reported in one line and the others go on.
    site.yml installs and starts a containerd instance, imports the workload images, deploys
    the host's kubelet profile verbatim (rolling back if the kubelet does not come up) and
    collects the host facts, which go into results/<run-id>/run.json.

    \b
    Examples:
      harness provision playbooks/examples/loopback-lab.yaml
      harness provision lab.yaml --playbook facts.yml --limit lab-a
      harness provision lab.yaml --playbook teardown.yml
      harness provision lab.yaml --check --diff      # the kubelet config diff, nothing changed
    Exit 0 when every host succeeded, 3 when a host failed (one line per host), 2 on bad input.
    """
    # lazy: commands load their libraries only when they run
    from harness.provision import load_inventory, provision

    inv = load_inventory(inventory_file)
    say = (lambda _m: None) if quiet else (lambda m: click.echo(m, err=True))
    res = provision(
        inv,
        Path(results_dir),
        playbook=playbook,
        limit=list(limit) or None,
        forks=forks,
        say=say,
        check=check,
        diff=diff,
    )
    for name, rep in res.hosts.items():
        line = f"  {name:<16} {rep.status:<12} ok={rep.ok} changed={rep.changed}"
        if rep.error:
            line += f"  {rep.error}"
        click.echo(line)
        for d in rep.diffs if diff else []:
            click.echo("    " + d.rstrip("\n").replace("\n", "\n    "))
    mode = " (check mode: nothing was changed)" if check else ""
    click.echo(f"harness: provisioning {res.status}{mode}; results in {res.run_dir}")
    if res.failed:
        names = ", ".join(f"{h.name} ({h.error})" for h in res.failed)
        raise HostError(f"{len(res.failed)} of {len(res.hosts)} host(s) failed: {names}")


def run_on_inventory_cmd(
    suite_file: str,
    inventory_file: str,
    *,
    backend: str,
    results_dir: str,
    only: list[str],
    sample_hz: float | None,
    quiet: bool,
    forks: int,
    limit: list[str],
    labels: list[str] | None = None,
    as_json: bool = False,
) -> None:
    """What ``harness run SUITE --inventory FILE`` does; exits like ``harness run``."""
    # lazy: commands load their libraries only when they run
    from harness.hosts.lab import run_on_inventory

    # lazy: commands load their libraries only when they run
    from harness.provision import load_inventory

    inv = load_inventory(inventory_file)
    res = run_on_inventory(
        suite_file,
        inv,
        Path(results_dir),
        backend=backend,
        only=only or None,
        limit=limit or None,
        forks=forks,
        sample_hz=sample_hz,
        quiet=quiet,
        labels=labels or [],
    )
    n = len(res.verdicts)
    bad = res.mismatches
    click.echo(
        f"harness: {n - bad}/{n} verdicts match on {len(res.hosts) - len(res.failed_hosts)}/{len(res.hosts)} "
        f"host(s); run {res.status}; results in {res.run_dir}",
        err=as_json,
    )
    if as_json:
        echo_run_summary(res.run_dir)
    if res.status == "interrupted":
        sys.exit(130)
    if res.failed_hosts:
        names = "; ".join(f"{h.name}: {h.error}" for h in res.failed_hosts)
        raise HostError(f"{len(res.failed_hosts)} of {len(res.hosts)} host(s) failed: {names}")
    sys.exit(0 if bad == 0 else 1)
