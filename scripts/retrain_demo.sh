#!/usr/bin/env bash
# The retraining loop on demo data, in a scratch folder, with the CLI (docs/retrain.md):
#   v1 (export at month 30 of a 36-month world whose behaviour drifts from month 30) -> champion;
#   the next export (month 36) -> challenger -> compare -> promote; a worse challenger -> kept out;
#   rollback. Prints the comparison figures, drift and the backtest.
#   bash scripts/retrain_demo.sh [WORKDIR]     (N_LEADS=8000 by default; MLflow: WORKDIR/mlflow.db)
set -euo pipefail
REPO="$(cd "$(dirname "$0")/.." && pwd)"
WORK="${1:-$(mktemp -d)}"
N_LEADS="${N_LEADS:-8000}"
mkdir -p "$WORK" && cd "$WORK"
export PATH="$REPO/.venv/bin:$PATH" MLFLOW_TRACKING_URI="sqlite:///$WORK/mlflow.db"
STAGES="generate validate snapshots features train evaluate thresholds bundle compare monitor explain publish"

set_params() {  # set_params KEY=VALUE ... (YAML values) on params.yaml
  python - "$@" <<'PY'
import sys, yaml
p = yaml.safe_load(open("params.yaml"))
for arg in sys.argv[1:]:
    key, value = arg.split("=", 1)
    node = p
    *parents, leaf = key.split(".")
    for k in parents:
        node = node.setdefault(k, {})
    node[leaf] = yaml.safe_load(value)
yaml.safe_dump(p, open("params.yaml", "w"), sort_keys=False)
PY
}
run() { for s in $1; do leadscore "$s" >/dev/null 2>"$WORK/stage.err" || { cat "$WORK/stage.err"; exit 1; }; done; }
show() {
  python - <<'PY'
import json
d = json.load(open("reports/compare.json"))
t = d["target"]
print("decision:", d["decision"]); [print("  -", r) for r in d["reasons"]]
s = d["slice"]; print(f"  slice {s['start']} .. {s['end']}: {s['rows']} rows, {s['leads']} leads, {s['positives']} positives")
for w in ("champion", "challenger"):
    if d[w]:
        m = d[w]["metrics"][t]
        print(f"  {w:10s} v{d[w]['version'] or 'new'}: " + ", ".join(
            f"{k} {v['value']:.4f} [{v['ci'][0]:.4f}, {v['ci'][1]:.4f}]" for k, v in m.items() if k in ("roc_auc", "pr_auc", "log_loss", "ece")))
PY
}

cp "$REPO/params.yaml" params.yaml
set_params generate.n_leads="$N_LEADS" generate.months=36 generate.export_months=30 \
  generate.drift.enabled=true generate.drift.date='"2026-07-01"' generate.drift.webinar_effect=0.1 \
  generate.drift.pricing_effect=3.0 validate.export_time='"2026-07-01T00:00:00"' explain.max_rows=5000 \
  'thresholds.stages=[{name: sales_ready, goal: {capacity_per_week: 10}}, {name: nurture, probability: 0.0}]'
echo "== v1: export at month 30"; run "$STAGES"; show
set_params generate.export_months=36 validate.export_time='"2027-01-01T00:00:00"'
echo "== the next export: month 36 (drift from month 30)"; run "$STAGES"; show
leadscore promote --by demo || true
echo "== drift and backtest of the champion"
leadscore monitor | tail -n +1
python -c "import json; d=json.load(open('reports/drift.json')); print('score PSI', d['score_psi'], 'expected ROC-AUC', d['expected_roc_auc'], 'test ROC-AUC', d['test_roc_auc']); print('top feature PSI', d['feature_psi_top'][:5])"
grep ",all," reports/backtest.csv | head -40
set_params train.n_estimators=1 train.num_leaves=2 train.max_depth=1 train.feature_fraction=0.1 \
  snapshots.split.train=0.1 snapshots.split.calibration=0.7
echo "== a worse challenger (tiny training window, one split)"; run "snapshots features train evaluate thresholds bundle compare publish"; show
leadscore promote --by demo || echo "(refused, as it should be)"
leadscore rollback --by demo --reason "demo rollback"
leadscore models
echo "work folder: $WORK"
