"""Pure logic of the containerd backend: ids, namespaces, ``ctr run`` arguments, ``ctr events`` lines,
and how the classifier names containerd when sources disagree."""

from __future__ import annotations

import calendar
import re
from pathlib import Path

import pytest

from harness.classify import OomRecord, WorkloadEvidence, classify
from harness.errors import HarnessError
from harness.launch.containerd import (
    NAMESPACE,
    ContainerdBackend,
    check_namespace,
    container_id,
    ctr_run_args,
    parse_event_line,
    parse_rfc3339,
    run_prefix,
)
from harness.launch.containerd.names import CGROUP_MOUNT

ID_RE = re.compile(r"^[A-Za-z0-9]+(?:[._-](?:[A-Za-z0-9]+))*$")  # containerd identifiers.Validate

# captured from `ctr --address ... events` against containerd 1.6.20 on this host
OOM = (
    '2026-11-23 18:38:39.165333581 +0000 UTC harness /tasks/oom {"container_id":"c1"}',
    '2026-11-23 18:38:39.189442748 +0000 UTC harness /tasks/exit {"container_id":"c1","id":"c1","pid":27511,'
    '"exit_status":137,"exited_at":"2026-11-23T18:38:39.189412313Z"}',
)
EXIT_ZERO = (
    '2026-11-23 18:45:10.5 +0000 UTC harness /tasks/exit {"container_id":"c2","id":"c2","pid":9,'
    '"exited_at":"2026-11-23T18:45:10.499Z"}'
)


def test_namespace_k8s_io_is_refused() -> None:
    assert check_namespace(NAMESPACE) == "harness"
    for bad in ("k8s.io", "", "a b"):
        with pytest.raises(HarnessError):
            check_namespace(bad)
    with pytest.raises(HarnessError, match=r"k8s\.io"):
        ContainerdBackend(namespace="k8s.io")


def test_container_ids_are_valid_unique_and_carry_the_run_prefix() -> None:
    run = "20261123T184412Z-local-containerd-5047"
    ids = {
        container_id(run, sc, w)
        for sc in ("s1-container-limit", "s4-kubepods-fast", "x" * 120, "weird/name..x")
        for w in ("leaker", "bystander", "guaranteed", "a_b")
    }
    assert len(ids) == 16
    for cid in ids:
        assert ID_RE.match(cid), cid
        assert len(cid) <= 76
        assert cid.startswith(run_prefix(run))
    assert container_id(run, "s", "w") == container_id(run, "s", "w")
    assert container_id(run, "s", "w") != container_id(run + "x", "s", "w")


def test_ctr_run_arguments() -> None:
    args = ctr_run_args(
        "registry.local/harness/leak:0.1.0",
        "cid1",
        ["/leak", "--chunk=1"],
        cgroup="/harness/r/s/kubepods/burstable/podu/leaker",
        labels={"io.harness.workload": "leaker", "io.harness.managed": "true"},
        log=Path("/w/leaker.log"),
        pidfile=Path("/w/leaker.pid"),
        runc_root=Path("/run/h/state/runc"),
        memory_limit=134217728,
    )
    assert args[:2] == ["run", "--detach"]
    assert args[args.index("--cgroup") + 1] == "/harness/r/s/kubepods/burstable/podu/leaker"
    assert args[args.index("--memory-limit") + 1] == "134217728"
    assert args[args.index("--log-uri") + 1] == "file:///w/leaker.log"
    assert args[args.index("--runc-root") + 1] == "/run/h/state/runc"
    assert args[args.index("--mount") + 1] == CGROUP_MOUNT
    assert [args[i + 1] for i, a in enumerate(args) if a == "--label"] == [
        "io.harness.managed=true",
        "io.harness.workload=leaker",
    ]
    assert args[-4:] == ["registry.local/harness/leak:0.1.0", "cid1", "/leak", "--chunk=1"]
    host = ctr_run_args(
        "img",
        "c",
        ["/leak"],
        cgroup="/x",
        labels={},
        log=Path("/l"),
        pidfile=Path("/p"),
        runc_root=Path("/r"),
        memory_limit=None,
    )
    assert "--memory-limit" not in host


def test_parse_oom_and_exit_events() -> None:
    oom, exit_ = (parse_event_line(line) for line in OOM)
    assert oom is not None and exit_ is not None
    assert oom.topic == "/tasks/oom" and oom.namespace == "harness" and oom.container_id == "c1"
    base = calendar.timegm((2026, 11, 23, 18, 38, 39, 0, 0, 0))
    assert oom.t_wall == pytest.approx(base + 0.165333581, abs=1e-6)
    assert exit_.payload["exit_status"] == 137 and exit_.payload["pid"] == 27511
    assert parse_rfc3339(exit_.payload["exited_at"]) == pytest.approx(base + 0.189412313, abs=1e-6)
    assert exit_.t_wall - oom.t_wall == pytest.approx(0.024109167, abs=1e-6)


def test_parse_exit_zero_has_no_status_field_and_offsets() -> None:
    ev = parse_event_line(EXIT_ZERO)
    assert ev is not None and "exit_status" not in ev.payload  # protobuf JSON leaves out zeros
    plus2 = parse_event_line(EXIT_ZERO.replace("+0000 UTC", "+0200 CEST"))
    assert plus2 is not None and ev.t_wall - plus2.t_wall == pytest.approx(7200)
    assert parse_rfc3339("2026-11-23T20:45:10.499+02:00") == parse_rfc3339("2026-11-23T18:45:10.499Z")
    assert parse_event_line("ctr: failed to dial") is None
    assert parse_rfc3339("yesterday") is None


OWN = "/harness/r/s/kubepods/burstable/podu/leaker"


def ev(**kw: object) -> WorkloadEvidence:
    base: dict[str, object] = dict(
        name="leaker",
        cgroup_abs="/sys/fs/cgroup/memory" + OWN,
        cgroup_rel=OWN,
        own_scope=[OWN],
        pids=[42],
        leaking=True,
    )
    base.update(kw)
    return WorkloadEvidence(**base)  # type: ignore[arg-type]


def test_classifier_names_containerd_as_a_source_that_agrees() -> None:
    k = OomRecord(t_mono=1.0, pid=42, comm="leak", oom_memcg=OWN, task_memcg=OWN)
    o = classify(
        ev(
            exit_code=137,
            oom_counter_delta=1,
            kmsg_kills=[k],
            runtime_oom_killed=True,
            runtime_name="containerd",
        )
    )
    assert o.outcome == "oom_killed"
    assert o.sources == ["kmsg", "memcg-counter", "containerd"] and o.disagreements == []


def test_classifier_names_containerd_when_it_disagrees() -> None:
    k = OomRecord(t_mono=1.0, pid=42, comm="leak", oom_memcg=OWN, task_memcg=OWN)
    o = classify(
        ev(
            exit_code=137,
            oom_counter_delta=1,
            kmsg_kills=[k],
            runtime_oom_killed=False,
            runtime_name="containerd",
        )
    )
    assert o.outcome == "oom_killed"
    assert o.disagreements == [
        "kmsg records the kill but containerd (/tasks/oom event) did not report the container as OOM-killed"
    ]
    # cgroup v1: an ancestor's OOM notifies every container below it; the program itself finished
    o = classify(
        ev(
            exit_code=0,
            reached_max=True,
            oom_counter_delta=0,
            runtime_oom_killed=True,
            runtime_name="containerd",
        )
    )
    assert o.outcome == "completed"
    assert "containerd (/tasks/oom event) reports an OOM" in o.disagreements[0]
    assert "kmsg" in o.disagreements[0] and "ancestor" in o.disagreements[0]
    # containerd alone says OOM for a SIGKILL: unknown, never guessed
    o = classify(ev(exit_code=137, oom_counter_delta=0, runtime_oom_killed=True, runtime_name="containerd"))
    assert o.outcome == "unknown" and o.sources == ["containerd"]
    assert "kmsg and the cgroup's oom_kill counter say nothing" in o.disagreements[0]
    # Docker keeps its own name
    o = classify(ev(exit_code=137, oom_counter_delta=0, runtime_oom_killed=True, runtime_name="docker"))
    assert o.disagreements[0].startswith("Docker (State.OOMKilled)")
