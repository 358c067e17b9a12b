"""Rate parsing, printing and the leak rewrite policy (harness/sweep/rates.py)."""

from __future__ import annotations

import pytest

from harness.config.suite import Leak, Scenario
from harness.errors import InputError
from harness.sweep.rates import (
    MAX_CHUNK,
    PAGE,
    format_rate,
    leak_for_rate,
    leaking_workload,
    parse_rate,
    parse_rate_range,
    scenario_for_rate,
)

MI = 1 << 20


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("16Mi/s", 16 * MI),
        ("16MiB/s", 16 * MI),
        ("16mib/s", 16 * MI),
        ("1.5Gi/s", 1.5 * (1 << 30)),
        ("512Ki/s", 512 * 1024),
        ("500k/s", 500_000),
        ("10MB/s", 10_000_000),
        ("10M", 10_000_000),
        ("1048576", 1048576),
        ("1048576/s", 1048576),
        (" 2 Mi / s ", 2 * MI),
        (".5Mi/s", 0.5 * MI),
        ("1e6/s", 1e6),
    ],
)
def test_parse_rate(text: str, value: float) -> None:
    assert parse_rate(text) == pytest.approx(value)


@pytest.mark.parametrize(
    ("text", "msg"),
    [
        ("", "invalid rate"),
        ("fast", "invalid rate"),
        ("16Mq/s", "unknown unit 'Mq'"),
        ("0Mi/s", "greater than 0"),
        ("-1Mi/s", "invalid rate"),
        ("16Mi/min", "invalid rate"),
    ],
)
def test_parse_rate_errors(text: str, msg: str) -> None:
    with pytest.raises(ValueError, match=msg):
        parse_rate(text)


def test_parse_rate_range() -> None:
    assert parse_rate_range("4Mi/s:64Mi/s") == (4 * MI, 64 * MI)
    assert parse_rate_range("1000:1Mi") == (1000, MI)
    for bad, msg in [
        ("4Mi/s", "expected LOW:HIGH"),
        ("4:5:6", "expected LOW:HIGH"),
        ("64Mi/s:4Mi/s", "LOW must be below HIGH"),
        ("4Mi/s:4Mi/s", "LOW must be below HIGH"),
        ("x:4Mi/s", "invalid low rate 'x'"),
        ("4Mi/s:y", "invalid high rate 'y'"),
    ]:
        with pytest.raises(ValueError, match=msg):
            parse_rate_range(bad)


def test_format_rate() -> None:
    assert format_rate(16 * MI) == "16 MiB/s"
    assert format_rate(15.87 * MI) == "15.9 MiB/s"
    assert format_rate(512 * 1024) == "512 KiB/s"
    assert format_rate(203 * MI) == "203 MiB/s"
    assert format_rate(2 * (1 << 30)) == "2 GiB/s"
    assert format_rate(100) == "100 B/s"


def test_leak_keeps_interval_and_scales_chunk() -> None:
    base = Leak.model_validate({"chunk": "1Mi", "interval": "100ms", "startDelay": "1s", "touch": 0.5})
    lk = leak_for_rate(base, 16 * MI)
    assert lk.interval_s == 0.1
    assert lk.chunk_bytes == round(1.6 * MI)
    assert lk.rate_bytes_per_s == pytest.approx(16 * MI, rel=1e-6)
    # everything else is kept
    assert (lk.start_delay_s, lk.touch, lk.max_bytes, lk.mode) == (1.0, 0.5, 0, "anon")
    assert base.chunk_bytes == MI  # the original is untouched


def test_leak_rate_is_per_workload_over_processes() -> None:
    lk = leak_for_rate(Leak.model_validate({"chunk": "1Mi", "interval": "50ms", "processes": 4}), 40 * MI)
    assert lk.chunk_bytes == MI // 2 and lk.interval_s == 0.05  # 40 MiB/s x 50 ms / 4 processes
    assert lk.rate_bytes_per_s == pytest.approx(40 * MI)


def test_leak_slow_rate_lengthens_interval_at_one_page() -> None:
    lk = leak_for_rate(Leak(), 8 * 1024)  # 8 KiB/s: 819 bytes per 100 ms is below a page
    assert lk.chunk_bytes == PAGE
    assert lk.interval_s == pytest.approx(0.5)
    assert lk.rate_bytes_per_s == pytest.approx(8 * 1024)
    with pytest.raises(ValueError, match="too slow"):
        leak_for_rate(Leak(), 100)  # one page every 41 s


def test_leak_fast_rate_caps_chunk_and_shortens_interval() -> None:
    lk = leak_for_rate(Leak(), 2 * (1 << 30))  # 2 GiB/s: 205 MiB per 100 ms
    assert lk.chunk_bytes == MAX_CHUNK
    assert lk.interval_s == pytest.approx(MAX_CHUNK / (2 * (1 << 30)), abs=1e-6)
    assert lk.rate_bytes_per_s == pytest.approx(2 * (1 << 30), rel=1e-3)
    with pytest.raises(ValueError, match="too fast"):
        leak_for_rate(Leak(), 200 * (1 << 30))


def test_leak_for_rate_rejects_nonsense() -> None:
    for bad in (0.0, -1.0, float("inf"), float("nan")):
        with pytest.raises(ValueError, match="positive"):
            leak_for_rate(Leak(), bad)


def _scenario(*workloads: dict[str, object]) -> Scenario:
    return Scenario.model_validate({"name": "s", "workloads": list(workloads)})


def test_leaking_workload_choice() -> None:
    one = _scenario({"name": "only", "leak": {"max": "10Mi"}})
    assert leaking_workload(one, None, "f.yaml").name == "only"
    two = _scenario({"name": "ballast", "leak": {"max": "1Gi"}}, {"name": "leaker"})
    assert leaking_workload(two, None, "f.yaml").name == "leaker"
    assert leaking_workload(two, "ballast", "f.yaml").name == "ballast"
    with pytest.raises(InputError, match="no workload named 'nope'; have ballast, leaker"):
        leaking_workload(two, "nope", "f.yaml")
    amb = _scenario({"name": "a"}, {"name": "b"})
    with pytest.raises(InputError, match="use --workload"):
        leaking_workload(amb, None, "f.yaml")


def test_scenario_for_rate_rewrites_only_the_leaker() -> None:
    sc = _scenario(
        {"name": "ballast", "leak": {"chunk": "64Mi", "interval": "20ms", "max": "1Gi"}},
        {"name": "leaker", "leak": {"chunk": "4Mi", "interval": "100ms"}},
    )
    out = scenario_for_rate(sc, "leaker", 100 * MI)
    ws = {w.name: w for w in out.workloads}
    assert ws["leaker"].leak.rate_bytes_per_s == pytest.approx(100 * MI)
    assert ws["ballast"].leak == sc.workloads[0].leak
    assert sc.workloads[1].leak.chunk_bytes == 4 * MI  # original untouched
