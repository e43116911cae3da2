"""The retraining loop end to end on demo data, against a real ``mlflow server`` and a real uvicorn.

1. Export 1 (month 30 of a simulated 36-month world whose behaviour drifts from month 30): the pipeline
   runs, ``compare`` finds no champion and says promote, ``publish`` registers v1 as champion; the server
   (``LEADSCORE_MODEL=models:/lead-propensity@champion``) serves v1.
2. The next export (same seed, 6 more months, drifted behaviour): the new challenger is compared with v1
   on the same recent out-of-time slice, the gate says promote, ``publish`` registers v2 as challenger;
   the server still serves v1 after a reload, until ``promote`` moves the alias; then a reload serves v2.
3. A deliberately worse challenger (a tiny training window and a one-split model) on the same export:
   the gate keeps it out, ``promote`` refuses, the server keeps serving v2 after a SIGHUP.
4. A thresholds-only change does not create a version; ``rollback`` returns to v1.
The served ``model_version`` changes only on promotion and rollback.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from leadscore.config import Params
from tests.model.synthetic import tmp_params
from tests.procs import free_port, stop_group

pytestmark = pytest.mark.slow

MODEL = "lead-propensity"
KEY = "retrain-loop-test-key-0123456789"
ROOT = Path(__file__).resolve().parents[2]
#: small demo: 36 simulated months, drift from month 30; 5000 leads keeps each pipeline run short
DEMO = {
    "generate.n_leads": 5000,
    "generate.months": 36,
    "generate.drift.enabled": True,
    "generate.drift.date": "2026-07-01",
    "generate.drift.webinar_effect": 0.1,
    "generate.drift.pricing_effect": 3.0,
    "thresholds.stages": [
        {"name": "sales_ready", "goal": {"capacity_per_week": 5}},
        {"name": "nurture", "probability": 0.0},
    ],
    "explain.max_rows": 2000,
    "compare.bootstrap": 200,
}
EXPORT_1 = {"generate.export_months": 30, "validate.export_time": "2026-07-01T00:00:00"}
EXPORT_2 = {"generate.export_months": 36, "validate.export_time": "2027-01-01T00:00:00"}
#: the worse challenger also has another feature spec (one window): each bundle scores with its own
WORSE = {
    "train.n_estimators": 1, "train.num_leaves": 2, "train.max_depth": 1, "train.feature_fraction": 0.1,
    "features.windows_days": [30], "features.active_day_windows": [30],
}  # fmt: skip


def _wait(proc: subprocess.Popen, url: str, log: Path, what: str) -> None:
    deadline = time.monotonic() + 120
    while True:
        if proc.poll() is not None:
            pytest.fail(f"{what} exited with {proc.returncode}:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            pytest.fail(f"{what} not ready within 120 s:\n{log.read_text()}")
        time.sleep(0.5)


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    root = tmp_path_factory.mktemp("mlflow-loop")
    port = free_port()
    log = root / "server.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [str(Path(sys.executable).with_name("mlflow")), "server", "--host", "127.0.0.1",
             "--port", str(port), "--workers", "1", "--backend-store-uri", f"sqlite:///{root}/mlflow.db",
             "--artifacts-destination", str(root / "art")],
            stdout=out, stderr=subprocess.STDOUT, cwd=root, start_new_session=True,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        _wait(proc, f"{url}/health", log, "mlflow server")
        yield url
    finally:
        stop_group(proc)


def _run_pipeline(params: Params, from_stage: str = "generate") -> dict:
    """The DVC stages in order (in-process), from ``from_stage`` to ``publish``; returns compare.json."""
    from leadscore.data.generate import generate, write_tables
    from leadscore.data.validate import run_validate
    from leadscore.features.stage import run_features, run_snapshots
    from leadscore.models.bundle import run_bundle
    from leadscore.models.compare import run_compare
    from leadscore.models.evaluate import run_evaluate
    from leadscore.models.explain import run_explain
    from leadscore.models.monitor import run_monitor
    from leadscore.models.registry import run_publish
    from leadscore.models.thresholds import run_thresholds
    from leadscore.models.train import run_train

    stages = {
        "generate": lambda p: write_tables(generate(p.generate, p.features), p.data.raw_dir),
        "validate": run_validate, "snapshots": run_snapshots, "features": run_features, "train": run_train,
        "evaluate": run_evaluate, "thresholds": run_thresholds, "bundle": run_bundle, "compare": run_compare,
        "monitor": run_monitor, "explain": run_explain, "publish": run_publish,
    }  # fmt: skip
    names = list(stages)
    for name in names[names.index(from_stage) :]:
        stages[name](params)
    return json.loads((params.data.reports_dir / "compare.json").read_text())


class Server:
    """``leadscore serve --model models:/lead-propensity@champion`` as a real uvicorn process."""

    def __init__(self, root: Path, tracking: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = root / "serve.log"
        env = {
            **os.environ,
            "MLFLOW_TRACKING_URI": tracking,
            "LEADSCORE_API_KEY": KEY,
            "LEADSCORE_LOG_LEVEL": "info",
            "LEADSCORE_MODEL_CACHE_DIR": str(root / "cache"),
            "LEADSCORE_BUNDLE_DIR": str(root / "no-local-bundle"),  # must not be what serves
        }
        with self.log.open("w") as out:
            self.proc = subprocess.Popen(
                [str(Path(sys.executable).with_name("leadscore")), "serve", "--host", "127.0.0.1",
                 "--port", str(self.port), "--model", f"models:/{MODEL}@champion"],
                env=env, stdout=out, stderr=subprocess.STDOUT, cwd=root, start_new_session=True,
            )  # fmt: skip
        _wait(self.proc, f"{self.url}/ready", self.log, "leadscore serve")

    def model(self) -> dict:
        r = httpx.get(f"{self.url}/v1/model", headers={"X-API-Key": KEY}, timeout=10)
        assert r.status_code == 200, r.text
        return r.json()

    def reload(self) -> dict:
        r = httpx.post(f"{self.url}/v1/admin/reload", headers={"X-API-Key": KEY}, timeout=60)
        assert r.status_code == 200, r.text
        return r.json()

    def reloads(self) -> int:
        """How many bundles the server has logged as serving (``serving <kind> bundle <checksum>``)."""
        return len(re.findall(r"serving \w+ bundle ", self.log.read_text()))

    def sighup(self, expect_checksum: str) -> None:
        """SIGHUP, then wait until the reload it triggers is logged (it runs in the background)."""
        before = self.reloads()
        os.kill(self.proc.pid, signal.SIGHUP)
        deadline = time.monotonic() + 60
        while self.reloads() == before:
            assert self.proc.poll() is None, self.log.read_text()
            assert time.monotonic() < deadline, f"no reload after SIGHUP:\n{self.log.read_text()}"
            time.sleep(0.2)
        assert self.model()["bundle_checksum"] == expect_checksum


def test_retrain_loop(mlflow_server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from leadscore.models.promotion import PromotionError, list_versions, promote, registry_client, rollback

    monkeypatch.chdir(tmp_path)  # publish looks for ./dvc.lock; nothing is written to the repository
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
    client = registry_client(mlflow_server)
    served: list[str] = []

    # 1. first export: no champion yet -> promote; publish makes v1 champion
    p1 = tmp_params(tmp_path / "w", **DEMO, **EXPORT_1)
    c1 = _run_pipeline(p1)
    assert c1["decision"] == "promote" and c1["champion"] is None, c1["reasons"]
    v1 = json.loads((p1.data.reports_dir / "mlflow_run.json").read_text())
    assert v1["model_version"] == "1" and "champion" in v1["aliases"]
    server = Server(tmp_path, mlflow_server)
    try:
        m1 = server.model()
        served.append(m1["model_version"])
        bundle_v1 = json.loads((p1.data.models_dir / "metadata.json").read_text())["model_version"]
        assert m1["model_version"] == bundle_v1

        # 2. the next export with drift: the challenger wins on the same slice and is promoted
        p2 = tmp_params(tmp_path / "w", **DEMO, **EXPORT_2)
        c2 = _run_pipeline(p2)
        assert c2["champion"]["version"] == "1"
        assert c2["slice"]["dropped_champion_overlap"] >= 0 and c2["slice"]["rows"] > 0
        assert c2["decision"] == "promote", c2["reasons"]
        drift = json.loads((p2.data.reports_dir / "drift.json").read_text())
        assert drift["model"]["version"] == "1" and drift["model"]["is_champion"]
        assert 0.5 < drift["expected_roc_auc"]["newest"] < 1 and drift["score_psi"] >= 0
        backtest = (p2.data.reports_dir / "backtest.csv").read_text().splitlines()
        assert backtest[0].startswith("target,month,stage,n,") and len(backtest) > 10
        html = (p2.data.reports_dir / "explain.html").read_text()
        assert 'id="retraining"' in html and "Champion vs challenger" in html
        v2 = json.loads((p2.data.reports_dir / "mlflow_run.json").read_text())
        assert v2["model_version"] == "2" and v2["aliases"] == ["challenger"]
        served.append(server.reload()["model_version"])  # alias not moved yet: still v1
        assert served[-1] == bundle_v1
        promoted = promote(client, MODEL, by="test", reason=None)
        assert promoted["champion"] == "2" and promoted["previous"] == "1"
        served.append(server.reload()["model_version"])
        bundle_v2 = json.loads((p2.data.models_dir / "metadata.json").read_text())["model_version"]
        assert served[-1] == bundle_v2 != bundle_v1

        # 3. a deliberately worse challenger (tiny training window, one split) is kept out
        p3 = tmp_params(
            tmp_path / "w", **DEMO, **EXPORT_2, **WORSE,
            **{"snapshots.split.train": 0.1, "snapshots.split.calibration": 0.7},
        )  # fmt: skip
        c3 = _run_pipeline(p3, from_stage="snapshots")
        assert (
            "cnt_pricing_view_7d"
            not in json.loads((p3.data.models_dir / "feature_spec.json").read_text())["model_features"]
        )
        assert c3["champion"]["version"] == "2"
        assert c3["decision"] == "keep", c3["reasons"]
        d_auc = c3["difference"]["sql"]["roc_auc"]
        assert d_auc["ci"][1] < 0, d_auc
        v3 = json.loads((p3.data.reports_dir / "mlflow_run.json").read_text())
        assert v3["model_version"] == "3"
        with pytest.raises(PromotionError, match="gate kept"):
            promote(client, MODEL, by="test")
        with pytest.raises(PromotionError, match="--reason"):
            promote(client, MODEL, force=True, reason=" ")
        checksum_v2 = server.model()["bundle_checksum"]
        server.sighup(checksum_v2)
        served.append(server.model()["model_version"])
        assert served[-1] == bundle_v2

        # 4. thresholds only (back on the v2 pipeline): same version, new thresholds, recorded
        stages = [
            {"name": "sales_ready", "goal": {"capacity_per_week": 9}},
            {"name": "nurture", "probability": 0.0},
        ]
        p4 = tmp_params(tmp_path / "w", **{**DEMO, **EXPORT_2, "thresholds.stages": stages})
        _run_pipeline(p4, from_stage="snapshots")
        v4 = json.loads((p4.data.reports_dir / "mlflow_run.json").read_text())
        assert v4["model_version"] == "2" and v4["registry_action"] == "thresholds_updated"
        reloaded = server.reload()
        assert reloaded["model_version"] == bundle_v2 and reloaded["bundle_checksum"] != checksum_v2
        served.append(reloaded["model_version"])
        rows = {r["version"]: r for r in list_versions(client, MODEL)}
        assert set(rows) == {"1", "2", "3"}
        assert len(rows["2"]["thresholds_updates"]) == 1
        assert rows["2"]["promoted"]["by"] == "test" and rows["2"]["gate"]["decision"] == "promote"
        assert rows["3"]["gate"]["decision"] == "keep" and rows["3"]["promoted"] is None

        # 5. rollback: v1 serves again
        back = rollback(client, MODEL, reason="test rollback", by="test")
        assert back["champion"] == "1"
        served.append(server.reload()["model_version"])
        assert served[-1] == bundle_v1
    finally:
        stop_group(server.proc)
    # changed only at the promotion (index 2) and the rollback (index 5)
    changes = [i for i in range(1, len(served)) if served[i] != served[i - 1]]
    assert changes == [2, 5], served
    figures = {
        "export_2": {k: c2[k] for k in ("decision", "reasons", "slice")},
        "worse": {k: c3[k] for k in ("decision", "reasons")},
        "auc": {w: c2[w]["metrics"]["sql"]["roc_auc"] for w in ("champion", "challenger")},
        "drift": json.loads((p2.data.reports_dir / "drift.json").read_text())["score_psi"],
    }
    print(json.dumps(figures, indent=1))
