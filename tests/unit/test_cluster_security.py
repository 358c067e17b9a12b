"""The local cluster's security and ownership: etcd only over TLS with client certificates of the
cluster's CA (a real etcd on free loopback ports), the kubelet's API authorized by the apiserver
(Webhook), and ``down`` removing only the ``kubepods`` cgroups its own kubelet created."""

from __future__ import annotations

import shutil
import socket
import ssl
import subprocess
import sys
import urllib.error
import urllib.request
from functools import partial
from pathlib import Path
from typing import Any

import pytest

import harness.locks
from harness.cluster import Cluster
from harness.cluster.ceiling import (
    DAEMONS_LIMIT,
    HOST_RESERVE,
    GiB,
    cap_kubepods,
    confine_daemons,
    daemons_limit,
    host_reserve,
    kubepods_limit_file,
    make_room,
    mem_total,
    pod_ceiling,
    restore,
)
from harness.cluster.pki import ensure_pki
from harness.errors import HarnessError, HostError

REPO = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_kubelet_api_is_authorized_by_the_apiserver(tmp_path: Path) -> None:
    cfg = Cluster(state=tmp_path).kubelet_config(REPO / "profiles" / "cluster-default.yaml", "1.33.4")
    assert cfg["authorization"] == {"mode": "Webhook"}
    assert cfg["authentication"]["anonymous"] == {"enabled": False}


def test_etcd_refuses_clients_without_a_certificate_of_the_cluster_ca(tmp_path: Path) -> None:
    if shutil.which("etcd") is None:
        pytest.fail("etcd is missing: scripts/setup.sh installs etcd-server")
    c = Cluster(state=tmp_path, etcd_client_port=_free_port(), etcd_peer_port=_free_port())
    pki = ensure_pki(tmp_path / "pki", c.node_name)
    argv = c.etcd_argv()
    assert "--client-cert-auth=true" in argv and "--peer-client-cert-auth=true" in argv
    assert not [a for a in argv if "http://" in a], "etcd must not listen on plain HTTP"
    assert c._start_etcd()
    try:
        url = f"127.0.0.1:{c.etcd_client_port}/health"
        # plain HTTP: refused (no HTTP listener)
        with pytest.raises((urllib.error.URLError, ConnectionError, OSError)):
            urllib.request.urlopen(f"http://{url}", timeout=3).read()
        # TLS without a client certificate: the handshake is refused
        anon = ssl.create_default_context(cafile=str(pki.ca))
        with pytest.raises((urllib.error.URLError, ssl.SSLError, ConnectionError, OSError)):
            urllib.request.urlopen(f"https://{url}", context=anon, timeout=3).read()
        # the apiserver's client certificate of the cluster's CA: healthy
        ok = ssl.create_default_context(cafile=str(pki.ca))
        ok.load_cert_chain(str(pki.crt("apiserver-etcd-client")), str(pki.key("apiserver-etcd-client")))
        with urllib.request.urlopen(f"https://{url}", context=ok, timeout=3) as r:
            assert b'"health":"true"' in r.read()
        assert not c._start_etcd(), "a second up must keep the running etcd"
    finally:
        c.daemon("etcd").stop()


def _fake_hierarchies(root: Path) -> None:
    for h in ("memory", "cpu", "pids"):
        (root / h).mkdir(parents=True)
        (root / h / "cgroup.procs").write_text("")


def test_down_removes_only_the_kubepods_its_kubelet_created(tmp_path: Path) -> None:
    root = tmp_path / "cgroup"
    _fake_hierarchies(root)
    (root / "memory" / "kubepods" / "burstable").mkdir(parents=True)  # a host kubelet's, there before
    c = Cluster(state=tmp_path / "state", ledger_dir=tmp_path / "owned", cgroup_root=root)
    claimed = c.claim_pod_cgroups()
    assert sorted(p.parent.name for p in claimed) == ["cpu", "pids"]
    for h in ("cpu", "pids"):  # what our kubelet then creates
        (root / h / "kubepods" / "besteffort").mkdir(parents=True)
    assert c.claim_pod_cgroups() == []  # a kubelet restart claims nothing more
    assert c._remove_pod_cgroups() == []
    assert (root / "memory" / "kubepods" / "burstable").is_dir(), "down removed another kubelet's kubepods"
    assert not (root / "cpu" / "kubepods").exists() and not (root / "pids" / "kubepods").exists()


def test_ceiling_caps_kubepods_below_the_hosts_memory_and_confines_the_daemons(tmp_path: Path) -> None:
    """A profile with ``enforceNodeAllocatable: []`` leaves kubepods at capacity (or unlimited):
    the harness lowers it below MemTotal minus the daemons' limit and a reserve; a lower limit
    (allocatable enforced) is kept; the daemons go to the limited ``harness-cluster``."""
    mem = tmp_path / "memory"
    (mem / "kubepods").mkdir(parents=True)
    total = 24 * GiB
    (mem / "kubepods" / "memory.limit_in_bytes").write_text("9223372036854771712\n")
    assert cap_kubepods(total, root=tmp_path) == total - DAEMONS_LIMIT - HOST_RESERVE
    assert int((mem / "kubepods" / "memory.limit_in_bytes").read_text()) < total - HOST_RESERVE
    (mem / "kubepods" / "memory.limit_in_bytes").write_text(str(3 * GiB))
    assert cap_kubepods(total, root=tmp_path) is None
    assert (mem / "kubepods" / "memory.limit_in_bytes").read_text() == str(3 * GiB)
    assert kubepods_limit_file(tmp_path) == mem / "kubepods" / "memory.limit_in_bytes"
    d = confine_daemons([4242], root=tmp_path)
    assert d == mem / "harness-cluster"
    assert int((d / "memory.limit_in_bytes").read_text()) == DAEMONS_LIMIT
    assert (d / "cgroup.procs").read_text() == "4242"
    assert pod_ceiling(total) + DAEMONS_LIMIT <= total - HOST_RESERVE
    # a 4 GiB lab VM (3.8 GiB MemTotal) still gets a cluster, with the shares scaled down
    small = 4123615232
    assert GiB <= pod_ceiling(small) < small - small // 3


def test_the_cluster_keeps_the_kubelets_kubepods_limit_that_its_ceiling_replaced(tmp_path: Path) -> None:
    """What the kubelet wrote is kept in the cluster's record when the ceiling replaces it (the
    cgroup verdicts judge it: ``NodeObservations.overwritten``), and only then."""
    root = tmp_path / "cgroup"
    kp = root / "memory" / "kubepods"
    kp.mkdir(parents=True)
    limit = kp / "memory.limit_in_bytes"
    c = Cluster(state=tmp_path / "state", ledger_dir=tmp_path / "owned", cgroup_root=root)
    limit.write_text(str(2 * GiB))  # below any host's ceiling: the kubelet's value stays
    assert c.cap_kubepods() is None and c.kubelet_overwritten() == {}
    kubelets = str(pod_ceiling(mem_total()) + (10 << 20))
    limit.write_text(kubelets + "\n")
    capped = c.cap_kubepods()
    assert capped == pod_ceiling(mem_total())
    assert c.kubelet_overwritten() == {str(limit): (kubelets, str(capped))}


def test_host_workloads_lower_kubepods_for_their_scenario_and_it_is_put_back(tmp_path: Path) -> None:
    """``placement: host`` workloads run outside kubepods: while they run, kubepods is lowered so that
    daemons + pods + host workloads stay below MemTotal less the reserve, then restored; a kubepods
    already low enough is left alone; caps too large for the host are refused before anything is
    written (cgroup v1 files, and v2's ``max``)."""
    total = 24 * GiB
    mem = tmp_path / "memory"
    kp = mem / "kubepods"
    kp.mkdir(parents=True)
    limit, usage = kp / "memory.limit_in_bytes", kp / "memory.usage_in_bytes"
    usage.write_text(str(GiB))
    limit.write_text(str(pod_ceiling(total)))  # what cap_kubepods left (enforceNodeAllocatable: [])
    host = 3 * GiB + (64 << 20)
    room = make_room(host, total, root=tmp_path)
    assert room is not None and room.before == pod_ceiling(total)
    after = int(limit.read_text())
    assert after == room.after and after + host + daemons_limit(total) <= total - host_reserve(total)
    restore(room)
    assert int(limit.read_text()) == pod_ceiling(total)
    # allocatable enforced (3 GiB): room enough, nothing written
    limit.write_text(str(3 * GiB))
    assert make_room(host, total, root=tmp_path) is None and limit.read_text() == str(3 * GiB)
    # caps that leave the pods under 1 GiB, or under what they use now: refused, file untouched
    limit.write_text(str(pod_ceiling(total)))
    with pytest.raises(HarnessError, match=r"lower their leak\.max"):
        make_room(pod_ceiling(total) - GiB // 2, total, root=tmp_path)
    usage.write_text(str(16 * GiB))
    with pytest.raises(HarnessError, match=r"pods now use 16.00 GiB"):
        make_room(host, total, root=tmp_path)
    assert int(limit.read_text()) == pod_ceiling(total)
    # cgroup v2: an unlimited kubepods comes back as "max"
    v2 = tmp_path / "v2"
    (v2 / "kubepods").mkdir(parents=True)
    (v2 / "cgroup.controllers").write_text("cpu memory pids\n")
    (v2 / "kubepods" / "memory.max").write_text("max\n")
    (v2 / "kubepods" / "memory.current").write_text(str(GiB))
    room = make_room(host, total, root=v2)
    assert room is not None and room.before is None
    assert int((v2 / "kubepods" / "memory.max").read_text()) == pod_ceiling(total) - host
    restore(room)  # never above the harness's ceiling, even where kubepods had no limit
    assert int((v2 / "kubepods" / "memory.max").read_text()) == pod_ceiling(total)
    # a kubelet that rewrote kubepods above the ceiling (after a restart, before the ceiling was
    # applied again) does not get its value back
    (v2 / "kubepods" / "memory.max").write_text(str(total))
    room = make_room(host, total, root=v2)
    assert room is not None and room.before == total
    restore(room)
    assert int((v2 / "kubepods" / "memory.max").read_text()) == pod_ceiling(total)


HOLD_CLUSTER = """
import sys, time
from pathlib import Path
from harness.locks import exclusive
with exclusive("cluster", "bring the local cluster up (v1.33.4)", directory=Path(sys.argv[1])):
    print("held", flush=True)
    time.sleep(60)
"""


def test_a_second_cluster_up_or_down_waits_for_the_first_then_fails_naming_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two checkouts on one machine: while one ``cluster up`` runs, the other's ``down`` (or ``up``)
    does not interleave with it: it waits, then fails naming the holder."""
    locks = tmp_path / "locks"
    monkeypatch.setattr(harness.locks, "LOCK_DIR", locks)
    monkeypatch.setattr(harness.locks, "DEFAULT_TIMEOUT", 1.0)
    p = subprocess.Popen([sys.executable, "-c", HOLD_CLUSTER, str(locks)], stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout is not None and p.stdout.readline().strip() == "held"
        said: list[str] = []
        c = Cluster(
            state=tmp_path / "state",
            run_dir=tmp_path / "run",
            ledger_dir=tmp_path / "owned",
            progress=said.append,
        )
        with pytest.raises(
            HostError,
            match=rf"cannot bring the local cluster down: .*pid {p.pid}: bring the local cluster up",
        ):
            c.down()
        assert said and "waiting for the lock" in said[0]
    finally:
        p.kill()
        p.wait()
    assert (
        Cluster(state=tmp_path / "state", run_dir=tmp_path / "run", ledger_dir=tmp_path / "owned").down()
        == []
    )  # free again


def _record(led: Any, file: Path, before: str, after: str) -> None:
    led.add("cgroup-limit", file=str(file), before=before, after=after)


def test_a_killed_runs_lowered_kubepods_is_put_back_by_cleanup(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The run records the lowered limit in its ledger before writing it; once the run is dead
    (SIGKILL: no teardown), ``sweep_host`` writes the old limit back, unless something else (a
    kubelet restart) wrote the file since; a live run's limit is left alone."""
    import harness.owned as owned

    monkeypatch.setattr(owned, "LIMIT_ROOT", tmp_path)
    total = 24 * GiB
    kp = tmp_path / "memory" / "kubepods"
    kp.mkdir(parents=True)
    limit = kp / "memory.limit_in_bytes"
    (kp / "memory.usage_in_bytes").write_text(str(GiB))
    ledgers = tmp_path / "owned"

    def run(owner: str, *, alive: bool) -> owned.Ledger:
        if alive:  # this process, with its start time
            return owned.Ledger.open(owner, directory=ledgers)
        return owned.Ledger.open(owner, pid=2**22 + 17, start=1, directory=ledgers)  # above pid_max

    for case in ("killed", "rewritten", "alive"):
        limit.write_text(str(pod_ceiling(total)))
        led = run(f"run-{case}", alive=case == "alive")
        room = make_room(
            3 * GiB,
            total,
            root=tmp_path,
            record=partial(_record, led),
        )
        assert room is not None and int(limit.read_text()) == room.after
        if case == "rewritten":
            limit.write_text(str(5 * GiB))  # the kubelet restarted with another profile since
        assert owned.sweep_host(directory=ledgers) == []
        want = {"killed": pod_ceiling(total), "rewritten": 5 * GiB, "alive": room.after}[case]
        assert int(limit.read_text()) == want, case
        assert bool(led.live("cgroup-limit")) == (case == "alive"), case
    # a ledger naming a file outside the cgroup tree, or not a limit file, is refused
    led = run("run-bad", alive=False)
    led.add("cgroup-limit", file="/etc/passwd", before="x", after="y")
    assert owned.sweep_host(directory=ledgers) == ["run-bad: refusing limit file /etc/passwd"]
