"""Pure logic of harness/hostperf.py: the leak's lines to a pass, the warm-up decision and size,
the host's coldest record. (The real measurement: tests/integration/test_hostperf.py.)"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from harness import hostperf
from harness.config.suite import load_suite
from harness.errors import HostError
from harness.model.layout import node_layout

MI = 1 << 20
SUITE = str(Path(__file__).resolve().parents[2] / "suites" / "sweep-local.yaml")


def _lines(start_ns: int, chunk_ns: list[int], chunk: int = 64 * MI) -> str:
    out = [json.dumps({"event": "start", "mono_ns": start_ns, "allocated": 0})]
    t, alloc = start_ns, 0
    for d in chunk_ns:
        t += d
        alloc += chunk
        out.append(json.dumps({"event": "chunk", "mono_ns": t, "allocated": alloc}))
    out.append(json.dumps({"event": "max", "mono_ns": t, "allocated": alloc}))
    return "\n".join(out) + "\nnot json\n"


def test_a_pass_is_timed_from_the_programs_own_lines() -> None:
    p = hostperf.parse_pass(_lines(10**9, [200_000_000, 100_000_000]), 128 * MI, 64 * MI)
    assert p.chunk_ms == [200.0, 100.0]
    assert p.seconds == pytest.approx(0.3) and p.rate == pytest.approx(128 * MI / 0.3)
    assert p.to_dict()["bytes_per_s"] == round(128 * MI / 0.3)


def test_a_pass_that_stopped_short_is_an_error() -> None:
    with pytest.raises(HostError, match=r"stopped after 64 of 128 MiB \(signal 9"):
        hostperf.parse_pass(_lines(0, [10**8]), 128 * MI, 64 * MI, returncode=-9)


def _rates(fresh_s: float, warm_s: float) -> hostperf.PageFaultRates:
    f = hostperf.TouchPass(256 * MI, fresh_s, 64 * MI, [fresh_s * 250] * 4)
    w = hostperf.TouchPass(256 * MI, warm_s, 64 * MI, [warm_s * 250] * 4)
    return hostperf.PageFaultRates(f, w)


def test_cold_slow_is_fresh_well_below_retouch() -> None:
    cold = _rates(1.25, 0.2)  # 205 vs 1280 MiB/s
    assert cold.cold_slow and cold.ratio == pytest.approx(0.16)
    assert "6.2x slower, a warm-up helps" in cold.describe()
    assert not _rates(0.2, 0.18).cold_slow


def _s11() -> SimpleNamespace:
    suite = load_suite(SUITE)
    return SimpleNamespace(local=suite.scenario("S11-local"), kube=suite.scenario("S11"))


def test_decide() -> None:
    sc = _s11().kube  # the ballast asks 3.2 GiB/s
    cold = {**_rates(1.25, 0.2).to_dict(), "free_page_reporting": False}
    warm = {**_rates(0.2, 0.18).to_dict(), "free_page_reporting": False}
    assert hostperf.decide("off", cold, sc) == (False, "off")
    assert hostperf.decide("on", warm, sc)[0]
    assert hostperf.decide("auto", cold, sc)[0]
    assert not hostperf.decide("auto", warm, sc)[0]
    assert not hostperf.decide("auto", None, sc)[0]
    # this run found its memory warm, but the host was seen cold before: warm up
    assert hostperf.decide("auto", {**warm, "host_coldest": cold}, sc)[0]
    # the probe found warm memory, but the balloon hands freed pages back: memory beyond is cold
    on, why = hostperf.decide("auto", {**warm, "free_page_reporting": True}, sc)
    assert on and "first touch 711 MiB/s" in why  # COLD_RATIO x retouch 1422 MiB/s
    # a slow leak (S11-local asks 10 MiB/s) is within even the cold rate: no warm-up
    on, why = hostperf.decide("auto", cold, _s11().local)
    assert not on and "within the first-touch rate" in why
    with pytest.raises(ValueError):
        hostperf.decide("sometimes", cold, sc)


def test_scenario_need() -> None:
    s = _s11()
    kube = node_layout(s.kube, kubelet=True)
    lim = {n: w.memory_limit_bytes for n, w in kube.workloads.items()}
    # ballast max 1600Mi + an unbounded leaker: capped by the kubepods limit
    assert hostperf.scenario_need(s.kube, kube.limits, lim) == kube.limits["kubepods"]
    local = node_layout(s.local)
    lim = {n: w.memory_limit_bytes for n, w in local.workloads.items()}
    assert hostperf.scenario_need(s.local, local.limits, lim) == 64 * MI  # the leaker's own limit


def test_remember_keeps_the_coldest(tmp_path: Path) -> None:
    rec = tmp_path / "pf.json"
    cold, warm = _rates(1.25, 0.2), _rates(0.2, 0.18)
    assert hostperf.remember(warm, rec)["ratio"] == pytest.approx(warm.ratio, abs=1e-3)
    assert hostperf.remember(cold, rec)["cold_slow"] is True
    kept = hostperf.remember(warm, rec)
    assert kept["cold_slow"] is True and kept["ratio"] == pytest.approx(cold.ratio, abs=1e-3)
    rec.write_text("garbage")
    assert hostperf.remember(warm, rec)["cold_slow"] is False
