"""Dump the model's predictions, to check that a change of the model leaves them byte-identical.

    python3 scripts/predict_golden.py dump OUT.json [--random N] [--pods] [--unit]
    python3 scripts/predict_golden.py compare A.json B.json
    python3 scripts/predict_golden.py hashes OUT.json [--random N]   # tests/fixtures/predict_golden.json

``dump`` writes, per case, the prediction's canonical JSON (every field of ``Prediction.to_dict``):
the suites in suites/*.yaml that load without the host's facts (kubelet and kernel-only), ``N``
random scenarios (tests/unit/predict_cases.py, seeded: planned, as-run with synthetic schedules and
recorded housekeeping, baselines, stale stats, ...), with ``--pods`` the 110-pod suite (planned and
as run), and with ``--unit`` every ``predict_scenario`` call the unit tests make (pytest runs in
this process with the function wrapped). Run it on the old code and on the new, then ``compare``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from harness.model import predict as _predict  # noqa: E402

_calls: dict[str, str] = {}
_current = ["<outside a test>"]


def _wrap() -> None:
    from tests.unit.predict_cases import canonical

    orig = _predict.predict_scenario

    def wrapped(*args: Any, **kwargs: Any) -> Any:
        try:
            pred = orig(*args, **kwargs)
        except Exception as exc:
            _calls[f"{_current[0]}#{len(_calls)}"] = canonical({"error": f"{type(exc).__name__}: {exc}"})
            raise
        _calls[f"{_current[0]}#{len(_calls)}"] = canonical(pred.to_dict())
        return pred

    _predict.predict_scenario = wrapped  # type: ignore[assignment]


class _Plugin:
    def pytest_runtest_setup(self, item: Any) -> None:
        _current[0] = item.nodeid


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    sub = ap.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("dump")
    d.add_argument("out", type=Path)
    d.add_argument("--random", type=int, default=300)
    d.add_argument("--pods", action="store_true")
    d.add_argument("--unit", action="store_true")
    h = sub.add_parser("hashes")
    h.add_argument("out", type=Path)
    h.add_argument("--random", type=int, default=300)
    c = sub.add_parser("compare")
    c.add_argument("a", type=Path)
    c.add_argument("b", type=Path)
    args = ap.parse_args()

    if args.cmd == "compare":
        a, b = json.loads(args.a.read_text()), json.loads(args.b.read_text())
        diff = sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k))
        for k in diff[:20]:
            print(f"differs: {k}")
        print(f"{len(a)} vs {len(b)} predictions; {len(diff)} differ")
        return 1 if diff else 0

    if args.cmd == "dump" and args.unit:
        _wrap()
        import pytest

        unit = REPO / "tests" / "unit"
        # the equality tests themselves are left out: their calls are the cases below, or reference runs
        skip = [f"--ignore={unit / f}" for f in ("test_predict_golden.py", "test_predict_scale.py")]
        rc = pytest.main(["-q", "-x", "-p", "no:cacheprovider", *skip, str(unit)], plugins=[_Plugin()])
        if rc != 0:
            print(f"unit tests failed ({rc})", file=sys.stderr)
            return 1

    from tests.unit.predict_cases import digest, pods_cases, random_cases, suite_cases

    out: dict[str, str] = {f"unit:{k}": v for k, v in _calls.items()}
    cases = [*suite_cases(), *random_cases(args.random)]
    if args.cmd == "hashes" or args.pods:
        cases += list(pods_cases())
    for name, run in cases:
        out[name] = run()
    if args.cmd == "hashes":
        out = {k: digest(v) for k, v in out.items()}
    args.out.write_text(json.dumps(out, indent=0, sort_keys=True) + "\n")
    print(f"{len(out)} predictions -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
