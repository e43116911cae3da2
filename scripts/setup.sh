#!/usr/bin/env bash
# Set up a fresh machine and run the whole pipeline on the built-in demo data.
#   bash scripts/setup.sh                 # venv + install + `dvc repro` (demo data → bundle → reports)
#   bash scripts/setup.sh --install-only  # venv + install, no pipeline run (what CI uses)
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e '.[dev,spark]'

# The HTML report is checked in a real headless browser (Debian's chromium). Install it when we can.
if ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
      || echo "warning: could not install chromium; browser tests will be skipped" >&2
  else
    echo "note: chromium not found; install it (apt-get install chromium) to run the browser tests" >&2
  fi
fi

# The Spark parity test runs Spark in local mode, which needs a Java runtime (Debian's OpenJDK 17).
if ! command -v java >/dev/null 2>&1; then
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openjdk-17-jre-headless >/dev/null) \
      || (DEBIAN_FRONTEND=noninteractive apt-get install -y -qq default-jre-headless >/dev/null) \
      || echo "warning: could not install Java; Spark tests will be skipped" >&2
  else
    echo "note: java not found; install it (apt-get install openjdk-17-jre-headless) to run the Spark tests" >&2
  fi
fi

if [ "${1:-}" = "--install-only" ]; then
  exit 0
fi

# DVC stages call the `leadscore` CLI, so the venv must be on PATH.
export PATH="$PWD/.venv/bin:$PATH"
dvc repro
dvc metrics show
echo
echo "Done. Bundle: models/   Report: reports/explain.html   Metrics: reports/metrics.json"
echo "MLflow UI:  .venv/bin/mlflow ui --backend-store-uri sqlite:///mlflow.db"
