"""Classification from independent evidence, and verdicts against predictions."""

from __future__ import annotations

from typing import Any

from harness.classify import OomRecord, Outcome, WorkloadEvidence, classify
from harness.model.predict import Alternative, WorkloadPrediction
from harness.verdict import judge

OWN = "/harness/r/s/kubepods/burstable/podu/leaker"
POD = "/harness/r/s/kubepods/burstable/podu"


def ev(**kw: Any) -> WorkloadEvidence:
    base: dict[str, Any] = dict(
        name="leaker",
        cgroup_abs="/sys/fs/cgroup/memory" + OWN,
        cgroup_rel=OWN,
        own_scope=[OWN, POD],
        pids=[42],
        leaking=True,
    )
    base.update(kw)
    return WorkloadEvidence(**base)


def kill(memcg: str, pid: int = 42, invoker: int | None = 42) -> OomRecord:
    return OomRecord(
        t_mono=10.0,
        pid=pid,
        comm="leak",
        oom_memcg=memcg,
        task_memcg=OWN,
        oom_score_adj=969,
        invoker_pid=invoker,
        invoker_comm="leak",
    )


def test_memcg_oom_in_own_cgroup_confirmed_by_counter() -> None:
    o = classify(ev(exit_code=137, signal=9, oom_counter_delta=1, kmsg_kills=[kill(OWN)]))
    assert o.outcome == "oom_killed" and not o.victim
    assert o.sources == ["kmsg", "memcg-counter"] and o.disagreements == []
    assert o.t_mono == 10.0


def test_kill_at_kubepods_of_an_idle_pod_is_a_victim() -> None:
    o = classify(
        ev(
            leaking=False,
            exit_code=137,
            oom_counter_delta=1,
            kmsg_kills=[kill("/harness/r/s/kubepods", invoker=77)],
        )
    )
    assert o.outcome == "node_oom_killed" and o.victim
    assert o.oom_domain == "/harness/r/s/kubepods"


def test_the_leaker_killed_at_kubepods_is_not_a_victim() -> None:
    o = classify(ev(exit_code=137, oom_counter_delta=1, kmsg_kills=[kill("/harness/r/s/kubepods")]))
    assert o.outcome == "node_oom_killed" and not o.victim


def test_kmsg_without_counter_is_a_disagreement() -> None:
    o = classify(ev(exit_code=137, oom_counter_delta=0, kmsg_kills=[kill(OWN)]))
    assert o.outcome == "oom_killed"
    assert any("counter did not rise" in d for d in o.disagreements)


def test_sigkill_without_any_oom_evidence_is_unknown_never_guessed() -> None:
    o = classify(ev(exit_code=137, signal=9, oom_counter_delta=0))
    assert o.outcome == "unknown"
    assert "no OOM record" in o.evidence[-1]


def test_runtime_oomkilled_from_an_ancestor_oom_on_a_clean_exit() -> None:
    """Docker marks every container under an OOMing ancestor as OOMKilled (cgroup v1
    oom_control notifications reach the whole subtree); a clean exit with no kernel kill
    stays 'completed', and the disagreement is reported."""
    o = classify(
        ev(exit_code=0, runtime_oom_killed=True, oom_counter_delta=0, reached_max=True, leaking=False)
    )
    assert o.outcome == "completed"
    assert o.disagreements and "ancestor" in o.disagreements[0]


def test_heap_cap_and_eviction_and_deadline() -> None:
    assert classify(ev(exit_code=3, heap_cap_event=True)).outcome == "runtime_failed"
    assert classify(ev(kubelet_reason="Evicted", t_kubelet_mono=5.0)).outcome == "evicted"
    assert classify(ev(exit_code=0, stopped_by_harness=True)).outcome == "completed"
    assert classify(ev(admission_reason="OutOfmemory")).outcome == "rejected"


def test_a_heap_cap_is_timed_by_the_programs_own_report_not_the_late_exit_report() -> None:
    """L8 on a TCG guest: the program reported its cap at 10.6 s, the kubelet's terminated status
    reached the harness at 14.5 s; the time is the program's."""
    o = classify(ev(exit_code=3, heap_cap_event=True, t_heap_cap_mono=10.6, t_exit_mono=14.5))
    assert (o.outcome, o.t_mono) == ("runtime_failed", 10.6)
    assert classify(ev(exit_code=3, heap_cap_event=True, t_exit_mono=14.5)).t_mono == 14.5


def test_a_stop_that_needed_sigkill_is_a_survivor_not_an_unknown_kill() -> None:
    """A task throttled at memory.high ignored SIGTERM for the grace period; the runtime's SIGKILL
    after the harness's stop is not an unexplained kill (found on the VM with MemoryQoS)."""
    stopped = classify(ev(exit_code=137, signal=9, stopped_by_harness=True))
    assert stopped.outcome == "completed" and "needed SIGKILL" in " ".join(stopped.evidence)
    assert classify(ev(exit_code=137, signal=9)).outcome == "unknown"


def pred(
    outcome: str,
    lo: float | None,
    hi: float | None,
    victim: bool = False,
    alts: list[Alternative] | None = None,
) -> WorkloadPrediction:
    return WorkloadPrediction(
        name="leaker",
        outcome=outcome,
        earliest_s=lo,
        latest_s=hi,
        mechanism="m",
        victim=victim,
        race=bool(alts and len(alts) > 1),
        alternatives=alts or [Alternative(outcome, lo, hi, "m", 1.0)],
    )


def test_verdict_match_inside_window() -> None:
    o = classify(ev(exit_code=137, oom_counter_delta=1, kmsg_kills=[kill(OWN)]))
    v = judge("s", pred("oom_killed", 1.5, 1.5), o, 1.7, slack_s=0.5, interval_s=0.1)
    assert v.passed and v.time_ok


def test_verdict_time_outside_window_fails_with_reason() -> None:
    o = classify(ev(exit_code=137, oom_counter_delta=1, kmsg_kills=[kill(OWN)]))
    v = judge("s", pred("oom_killed", 1.5, 1.5), o, 5.0, slack_s=0.5, interval_s=0.1)
    assert v.match and v.time_ok is False and not v.passed
    assert "outside the predicted window" in v.reasons[0]


def test_verdict_outcome_mismatch_explains() -> None:
    o = classify(ev(exit_code=137, oom_counter_delta=1, kmsg_kills=[kill(OWN)]))
    v = judge("s", pred("evicted", 10, 20), o, 3.0, slack_s=0.5, interval_s=0.1)
    assert not v.passed
    assert v.reasons[0].startswith("predicted evicted (m), observed oom_killed")


def test_verdict_race_accepts_either_alternative() -> None:
    alts = [Alternative("evicted", 10, 20, "e", 0.6), Alternative("node_oom_killed", 14, 14, "k", 0.4)]
    o = classify(ev(exit_code=137, oom_counter_delta=1, kmsg_kills=[kill("/harness/r/s/kubepods")]))
    v = judge("s", pred("evicted", 10, 20, alts=alts), o, 14.2, slack_s=0.5, interval_s=0.1)
    assert v.passed and v.race and v.predicted == "evicted|node_oom_killed"


def test_verdict_victim_mismatch_fails() -> None:
    o = classify(
        ev(
            leaking=False,
            exit_code=137,
            oom_counter_delta=1,
            kmsg_kills=[kill("/harness/r/s/kubepods", invoker=77)],
        )
    )
    v = judge("s", pred("node_oom_killed", 4, 4, victim=False), o, 4.0, slack_s=0.5, interval_s=0.1)
    assert not v.passed and "innocent victim" in v.reasons[0]


def test_a_node_wide_kill_may_come_as_late_as_the_nodes_recorded_stall() -> None:
    """exhaustsNode on the VM: the model put the first kill at 92.9 s, the kernel killed at 105.7 s,
    while the node's daemons did not answer from 88 to 111.7 s (reclaim thrashing before the OOM)."""
    o = classify(ev(exit_code=137, oom_counter_delta=1, kmsg_kills=[kill("/harness/r/s/kubepods")]))
    p = pred("node_oom_killed", 92.85, 92.85)
    late = judge("s", p, o, 105.69, slack_s=1.0, interval_s=0.5)
    assert late.time_ok is False
    v = judge("s", p, o, 105.69, slack_s=1.0, interval_s=0.5, node_stall_until_s=111.7)
    assert v.passed and v.time_ok
    # not earlier than the window, and not past the stall
    early = judge("s", p, o, 80.0, slack_s=1.0, interval_s=0.5, node_stall_until_s=111.7)
    after = judge("s", p, o, 120.0, slack_s=1.0, interval_s=0.5, node_stall_until_s=111.7)
    assert early.time_ok is False and after.time_ok is False
    assert "or the node's stall until 111.70s" in after.reasons[0]
    # an eviction is the kubelet's, not held back by the kernel's reclaim
    ev_pred = pred("evicted", 10, 12)
    o_ev = Outcome("leaker", "evicted", None, False, [], [], [])
    assert (
        judge("s", ev_pred, o_ev, 30.0, slack_s=1.0, interval_s=0.5, node_stall_until_s=40).time_ok is False
    )
