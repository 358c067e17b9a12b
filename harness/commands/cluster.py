"""``harness cluster up|down|status|build``: the local single-node Kubernetes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import click

DEFAULT_PROFILE = Path(__file__).resolve().parents[2] / "profiles" / "cluster-default.yaml"


def _say(msg: str) -> None:
    click.echo(f"[cluster {time.strftime('%H:%M:%S')}] {msg}", err=True)


@click.group("cluster")
def cluster_group() -> None:
    """A real kubelet + kube-apiserver + etcd + containerd on this host (loopback only)."""


@cluster_group.command("build")
@click.option(
    "--version",
    "versions",
    multiple=True,
    required=True,
    help="Kubernetes release, e.g. 1.33.4 (repeatable).",
)
def build_cmd(versions: tuple[str, ...]) -> None:
    """Build kubelet and kube-apiserver for VERSION(s) from the k8s.io/kubernetes module (cached)."""
    # lazy: commands load their libraries only when they run
    from harness.cluster.build import ensure_built

    for v in versions:
        t = time.monotonic()
        r = ensure_built(v, progress=_say)
        how = "cached" if r.cached else f"built in {time.monotonic() - t:.0f} s {r.seconds}"
        click.echo(f"v{r.build.version}: {r.bin_dir} ({how})")


@cluster_group.command("up")
@click.option(
    "--version", default=None, help="Kubernetes release to run (default: the last one, else 1.33.4)."
)
@click.option(
    "--profile",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="KubeletConfiguration the kubelet runs with (default profiles/cluster-default.yaml).",
)
@click.option(
    "--detach", is_flag=True, help="Do the work in the background; follow it with `harness cluster status`."
)
@click.option("--json", "as_json", is_flag=True, help="Print timings as JSON.")
def up_cmd(version: str | None, profile: Path | None, detach: bool, as_json: bool) -> None:
    """Build (if needed) and start the cluster; restart the kubelet if its profile changed."""
    # lazy: commands load their libraries only when they run
    from harness.cluster import DEFAULT_VERSION, Cluster

    cluster = Cluster(progress=_say)
    version = version or cluster.record().get("version") or DEFAULT_VERSION
    if profile is None:
        last = cluster.record().get("profile")
        profile = Path(last) if last and Path(last).is_file() else DEFAULT_PROFILE
    if detach:
        log = cluster.state / "logs" / "up.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "ab") as f:
            p = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "harness",
                    "cluster",
                    "up",
                    "--version",
                    version,
                    "--profile",
                    str(profile),
                ],
                stdout=f,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                env=dict(os.environ),
            )
        (cluster.state / "pids").mkdir(parents=True, exist_ok=True)
        (cluster.state / "pids" / "up.json").write_text(json.dumps({"pid": p.pid, "log": str(log)}) + "\n")
        click.echo(f"cluster up running in the background (pid {p.pid}); progress in {log}")
        return
    timings = cluster.up(version, profile)
    if as_json:
        click.echo(json.dumps(timings))
    else:
        click.echo(
            f"cluster v{version} up with {profile}: node {cluster.node_name} Ready; "
            + ", ".join(f"{k} {v:.1f}s" for k, v in timings.items())
        )
        click.echo(f"kubeconfig: {cluster.admin_kubeconfig}")


@cluster_group.command("down")
@click.option(
    "--purge", is_flag=True, help="Also delete etcd data, credentials and kubelet state (keeps builds)."
)
def down_cmd(purge: bool) -> None:
    """Stop exactly what `up` started, by pid (kubelet, apiserver, containerd, etcd)."""
    # lazy: commands load their libraries only when they run
    from harness.cluster import Cluster

    stopped = Cluster(progress=_say).down(purge=purge)
    click.echo("stopped: " + (", ".join(stopped) if stopped else "nothing was running"))


@cluster_group.command("status")
@click.option("--json", "as_json", is_flag=True)
def status_cmd(as_json: bool) -> None:
    """Each component, versions, node conditions and allocatable."""
    # lazy: commands load their libraries only when they run
    from harness.cluster import Cluster

    st = Cluster().status()
    if as_json:
        click.echo(json.dumps(st, indent=2, default=str))
        return
    click.echo(
        f"state: {st['state']}   version: {st.get('version') or '-'}   profile: {st.get('profile') or '-'}"
    )
    for name, c in st["components"].items():
        state = f"running (pid {c.get('pid')})" if c.get("running") else "stopped"
        click.echo(f"  {name:15s} {state}")
    for k, v in (st.get("versions") or {}).items():
        click.echo(f"  {k:15s} {v}")
    node = st.get("node")
    if node:
        if "error" in node:
            click.echo(f"  node: {node['error']}")
        else:
            conds = " ".join(f"{k}={v}" for k, v in node["conditions"].items())
            click.echo(
                f"  node {node['name']} kubelet {node['kubeletVersion']} runtime {node['containerRuntimeVersion']}"
            )
            click.echo(f"    conditions: {conds}")
            click.echo(
                f"    capacity:    memory {node['capacity'].get('memory')} cpu {node['capacity'].get('cpu')}"
            )
            click.echo(
                f"    allocatable: memory {node['allocatable'].get('memory')} cpu {node['allocatable'].get('cpu')}"
            )
    if st.get("timings"):
        click.echo("  last up: " + ", ".join(f"{k} {v:.1f}s" for k, v in st["timings"].items()))
    if not any(c.get("running") for c in st["components"].values()):
        # like `systemctl status`: 3 = not running, so scripts can test it
        sys.exit(3)
