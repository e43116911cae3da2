#!/usr/bin/env bash
# Run the whole test suite (unit, data, model, serve, integration incl. slow and browser tests).
# Extra arguments go to pytest, e.g.  bash scripts/test.sh -m "not slow"
set -uo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"
.venv/bin/ruff check src tests benchmarks scripts || exit 1
.venv/bin/python -m pytest -n 2 --dist loadfile "$@"
code=$?
if [ "$code" = "5" ]; then
  echo "error: pytest collected no tests" >&2
  exit 1
fi
exit "$code"
