"""``harness upgrade-check``: build two kubelet versions, run a suite on each alternately, compare."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import click

from harness.errors import InputError
from harness.upgrade import (
    UpgradeCheck,
    build_command,
    execute,
    gather,
    new_check_id,
    normalize_version,
    plan,
    selectors,
    step_commands,
)


def _say(msg: str) -> None:
    click.echo(f"harness: {msg}", err=True)


@click.command("upgrade-check")
@click.option("--from", "from_version", required=True, help="The kubelet release in use, e.g. 1.33.4 (BASE).")
@click.option("--to", "to_version", required=True, help="The release to upgrade to, e.g. 1.34.2 (NEW).")
@click.option(
    "--suite",
    type=click.Path(dir_okay=False),
    default="suites/kubelet.yaml",
    show_default=True,
    help="Suite run on each version (kubernetes backend).",
)
@click.option(
    "--repeats",
    type=click.IntRange(1, 100),
    default=5,
    show_default=True,
    help="Runs per version (alternating A B A B ...); from --min-repeats the noise within a side is measured.",
)
@click.option(
    "--scenario", "scenarios", multiple=True, help="Run only this scenario (name or id); repeatable."
)
@click.option(
    "--profile",
    type=click.Path(exists=True, dir_okay=False),
    help="KubeletConfiguration for 'cluster up' (default: the cluster's last one).",
)
@click.option(
    "-o",
    "--output",
    "out_dir",
    type=click.Path(file_okay=False),
    help="Folder for report.html, the comparison (text, Markdown, JUnit, JSON), upgrade.json and the step "
    "logs (default results/upgrades/<check-id>).",
)
@click.option(
    "--results",
    "results_dir",
    type=click.Path(file_okay=False),
    help="Where the runs go (default OUTPUT/runs).",
)
@click.option("--tolerance-seconds", type=float, default=1.0, show_default=True, help="As for compare.")
@click.option("--alpha", type=float, default=0.05, show_default=True, help="As for compare.")
@click.option("--min-repeats", type=int, default=5, show_default=True, help="As for compare.")
@click.option("--min-effect", type=float, default=1.0, show_default=True, help="As for compare.")
@click.option("--dry-run", is_flag=True, help="Print the schedule and the commands; run nothing.")
@click.option(
    "--compare-only",
    is_flag=True,
    help="Do not run anything: compare the runs of the check in --output again (its upgrade.json).",
)
def upgrade_cmd(
    from_version: str,
    to_version: str,
    suite: str,
    repeats: int,
    scenarios: tuple[str, ...],
    profile: str | None,
    out_dir: str | None,
    results_dir: str | None,
    tolerance_seconds: float,
    alpha: float,
    min_repeats: int,
    min_effect: float,
    dry_run: bool,
    compare_only: bool,
) -> None:
    """Does upgrading the kubelet from --from to --to change what it does to node memory?

    \b
    Examples:
      harness upgrade-check --from 1.33.4 --to 1.34.2
      harness upgrade-check --from 1.31.13 --to 1.32.5 --suite suites/upgrade.yaml --repeats 5 -o /srv/gate
      harness upgrade-check --from 1.33.4 --to 1.33.4 --repeats 5       # A/A: the noise of this host
      harness upgrade-check --from 1.33.4 --to 1.34.2 --dry-run
    Builds both versions (cached), then runs the suite on the local cluster alternating versions
    (A B A B ..., so host drift hits both), each run labelled upgrade=<check-id>, side=from|to,
    repeat=N; then compares the sides like 'harness compare' and writes OUTPUT/report.html (the
    gate's table, both timelines side by side per scenario). The cluster is left on --to.
    Exit 0 no change, 1 the kubelet's behaviour changed, 2 bad input (or a run's), 3 a step of the
    lab failed (build, cluster up, a run's host error; the step's log is named), 4 an internal
    error, 130 interrupted.
    """
    from harness.compare import CompareOptions  # lazy: harness.compare loads pandas/pyarrow (CLI start-up)

    opts = CompareOptions(
        tolerance_seconds=tolerance_seconds, alpha=alpha, min_repeats=min_repeats, min_effect=min_effect
    )
    opts.validate()
    if compare_only:
        if not out_dir:
            raise InputError("--compare-only", None, "needs -o/--output, the folder of an earlier check")
        state = Path(out_dir) / "upgrade.json"
        if not state.is_file():
            raise InputError(str(state), None, "no upgrade.json: not the folder of an upgrade check")
        check = UpgradeCheck(**{k: v for k, v in json.loads(state.read_text()).items()})
        _compare_and_report(check, Path(out_dir), opts)
        return
    a, b = normalize_version(from_version), normalize_version(to_version)
    if not Path(suite).is_file():
        raise InputError(suite, None, "suite file not found")
    check_id = new_check_id(a, b)
    out = Path(out_dir) if out_dir else Path("results") / "upgrades" / check_id
    check = UpgradeCheck(
        check_id=check_id,
        from_version=a,
        to_version=b,
        suite=suite,
        repeats=repeats,
        results=str(Path(results_dir) if results_dir else out / "runs"),
        scenarios=list(scenarios),
        profile=profile,
    )
    steps = plan(a, b, repeats)
    if dry_run:
        click.echo(f"check {check_id}: {len(steps)} runs, output {out}")
        click.echo("harness " + " ".join(build_command([a, b])))
        for s in steps:
            for argv in step_commands(s, check):
                click.echo("harness " + " ".join(argv))
        base, new = selectors(check_id)
        click.echo(f"harness compare --results {check.results} '{base}' '{new}'")
        return
    if repeats < min_repeats:
        _say(
            f"{repeats} run(s) per side: outcomes and the as-run windows are judged; the position of an "
            f"event inside its window and outcome shares are tested from --min-repeats {min_repeats}"
        )
    _say(f"upgrade check {check_id}: v{a} -> v{b}, {len(steps)} runs of {suite}; output in {out}")
    t = time.monotonic()
    try:
        execute(check, out, progress=_say)
    except KeyboardInterrupt:
        _say(f"interrupted; the runs so far are in {check.results}, the state in {out / 'upgrade.json'}")
        sys.exit(130)
    _say(f"all {len(steps)} runs done in {time.monotonic() - t:.0f} s")
    _compare_and_report(check, out, opts)


def _compare_and_report(check: object, out: Path, opts: object) -> None:
    # lazy: compare loads pandas/pyarrow, the HTML comparison matplotlib (CLI start-up)
    from harness.compare import CompareOptions, compare_groups, load_group
    from harness.compare.output import to_json, to_junit, to_markdown, to_text
    from harness.report.compare import write_comparison_report

    assert isinstance(check, UpgradeCheck) and isinstance(opts, CompareOptions)
    t = time.monotonic()
    runs = gather(check)
    base_sel, new_sel = selectors(check.check_id)
    for side, sel in zip(("from", "to"), (base_sel, new_sel), strict=True):
        if not runs[side]:
            raise InputError(side, None, f"{sel!r} selects no complete run in {check.results}")
    base = load_group(f"v{check.from_version} ({base_sel})", runs["from"])
    new = load_group(f"v{check.to_version} ({new_sel})", runs["to"])
    c = compare_groups(base, new, opts)
    elapsed = time.monotonic() - t
    out.mkdir(parents=True, exist_ok=True)
    text = to_text(c)
    (out / "compare.txt").write_text(text + "\n")
    (out / "compare.md").write_text(to_markdown(c))
    (out / "junit.xml").write_text(to_junit(c, elapsed))
    (out / "compare.json").write_text(to_json(c))
    title = f"Upgrade check: kubelet v{check.from_version} -> v{check.to_version}"
    html = write_comparison_report(c, out / "report.html", title, progress=_say)
    click.echo(text)
    _say(f"report: {html}")
    sys.exit(1 if c.changed else 0)
