#!/usr/bin/env bash
# The whole test suite: lint, types, unit, integration and end-to-end tests.
# pytest's exit code 5 (no tests collected) is a failure here.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}

echo "== ruff"; "$PY" -m ruff check harness tests || exit 1
echo "== ruff format"; "$PY" -m ruff format --check harness tests || exit 1
echo "== mypy"; "$PY" -m mypy || exit 1
echo "== import layers"; lint-imports --no-cache || exit 1
echo "== pytest"
"$PY" -m pytest "$@"
rc=$?
if [[ $rc -eq 5 ]]; then echo "pytest collected no tests: failing" >&2; exit 1; fi
exit $rc
