"""Parity: the API, ``leadscore score`` and the batch pipeline's test-slice predictions agree to 1e-9.

Payloads are rebuilt from the pipeline's validated (interim) tables as the CRM would have sent them at
each example's snapshot time (events and stage changes before it), with ``as_of`` = ``snapshot_ts``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import orjson
import pandas as pd
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from leadscore.cli import app as cli
from leadscore.config import Params
from leadscore.serve.payload import PayloadPolicy
from leadscore.serve.pipeline import PipelineModel
from leadscore.serve.schemas import SCORE_ADAPTER
from tests.serve.pipeline import payloads_at

pytestmark = pytest.mark.slow

PER_SNAPSHOT = 25


def _examples(pipeline: Params, target: str) -> pd.DataFrame:
    pred = pd.read_parquet(pipeline.data.build_dir / "train" / f"predictions_{target}.parquet")
    test = pred[pred["split"] == "test"]
    # a spread of snapshot dates, some leads of each (incl. leads past SQL for closed_won)
    return test.groupby("snapshot_ts", group_keys=False).head(PER_SNAPSHOT).reset_index(drop=True)


@pytest.mark.parametrize("target", ["sql", "closed_won"])
def test_api_offline_and_pipeline_agree(
    pipeline: Params,
    interim: dict[str, pd.DataFrame],
    client: TestClient,
    bundle_dir: Path,
    tmp_path: Path,
    target: str,
) -> None:
    examples = _examples(pipeline, target)
    assert examples["snapshot_ts"].nunique() >= 2 and len(examples) >= 40
    api: list[float] = []
    offline_in, offline_keys = [], []
    for ts, group in examples.groupby("snapshot_ts", sort=False):
        payloads = payloads_at(interim, group["lead_id"].tolist(), ts)
        r = client.post("/v1/score/batch?explain=false", json={"leads": payloads})
        assert r.status_code == 200 and r.json()["n_failed"] == 0, r.text
        api += [x["probabilities"][target] for x in r.json()["results"]]
        offline_in.append(group.assign(as_of=ts))
        offline_keys.append(group)
    expected = pd.concat(offline_keys, ignore_index=True)["p"].to_numpy()
    np.testing.assert_allclose(api, expected, rtol=0, atol=1e-9)

    # leadscore score: the same leads from files (leads CSV with as_of, events/stages/accounts Parquet)
    frames = pd.concat(offline_in, ignore_index=True)
    leads = frames[["lead_id", "as_of"]].merge(interim["leads"], on="lead_id", how="left")
    interim["accounts"].to_parquet(tmp_path / "accounts.parquet")
    # one export per snapshot date: the files hold what the CRM knew at that date
    got = []
    for i, (ts, part) in enumerate(leads.groupby("as_of", sort=False)):
        ev = interim["events"][
            interim["events"]["lead_id"].isin(part["lead_id"]) & (interim["events"]["ts"] < ts)
        ]
        st = interim["stage_history"]
        st = st[st["lead_id"].isin(part["lead_id"]) & (st["ts"] < ts)]
        part.to_csv(tmp_path / f"leads_{i}.csv", index=False)  # as_of per row, dates as text
        ev.to_parquet(tmp_path / f"events_{i}.parquet")
        st.to_csv(tmp_path / f"stages_{i}.csv", index=False)
        out = tmp_path / f"scored_{i}.parquet"
        res = CliRunner().invoke(
            cli,
            [
                "score",
                str(tmp_path / f"leads_{i}.csv"),
                "-o",
                str(out),
                "--bundle",
                str(bundle_dir),
                "--events",
                str(tmp_path / f"events_{i}.parquet"),
                "--stage-history",
                str(tmp_path / f"stages_{i}.csv"),
                "--accounts",
                str(tmp_path / "accounts.parquet"),
                "--no-explain",
            ],
        )
        assert res.exit_code == 0, res.output
        scored = pd.read_parquet(out)
        assert (scored["error"] == "").all() and scored["lead_id"].tolist() == part["lead_id"].tolist()
        got.append(scored[f"p_{target}"].to_numpy())
    np.testing.assert_allclose(np.concatenate(got), expected, rtol=0, atol=1e-9)


@pytest.mark.parametrize("explain", [True, False])
def test_one_lead_path_equals_batch_path(
    bundle_dir: Path, interim: dict[str, pd.DataFrame], test_rows: pd.DataFrame, explain: bool
) -> None:
    """A lead scored alone gets the same response as inside a batch (what micro-batching relies on):
    probabilities, stage, score and reasons."""
    model = PipelineModel.load(bundle_dir)
    policy = PayloadPolicy()
    rows = test_rows.groupby("snapshot_ts", group_keys=False).head(8)
    checked = 0
    for ts, part in rows.groupby("snapshot_ts"):
        reqs = [
            SCORE_ADAPTER.validate_json(orjson.dumps(p))
            for p in payloads_at(interim, part["lead_id"].tolist(), ts)
        ]
        together = model.score(reqs, explain, policy=policy).results
        for i, req in enumerate(reqs):
            alone = model.score([req], explain, policy=policy).results[0]
            expected = together[i]
            assert alone.keys() == expected.keys()
            for t, p in expected["probabilities"].items():
                assert alone["probabilities"][t] == pytest.approx(p, abs=1e-12)
            assert (alone["stage"], alone["score"]) == (expected["stage"], expected["score"])
            if explain:
                for side in ("positive", "negative"):
                    got, want = alone["reasons"][side], expected["reasons"][side]
                    assert [(r["feature"], r["text"]) for r in got] == [
                        (r["feature"], r["text"]) for r in want
                    ]
                    np.testing.assert_allclose(
                        [r["contribution"] for r in got], [r["contribution"] for r in want], atol=1e-12
                    )
            checked += 1
    assert checked >= 20


def test_missing_values_are_reasons_only_where_the_bundle_says(
    bundle_dir: Path, interim: dict[str, pd.DataFrame], test_rows: pd.DataFrame
) -> None:
    """The API's reasons use the bundle's informative-missing map (measured on the training slice, the
    same map the explanation report uses): a missing value is a reason only in the map's direction."""
    from leadscore.models.missing import missing_mask
    from leadscore.serve.payload import prepare

    model = PipelineModel.load(bundle_dir)
    assert model.bundle.informative_missing is not None and model.informative_missing is not None
    ts = test_rows["snapshot_ts"].max()
    ids = test_rows.loc[test_rows["snapshot_ts"] == ts, "lead_id"].head(200).tolist()
    reqs = [SCORE_ADAPTER.validate_json(orjson.dumps(p)) for p in payloads_at(interim, ids, ts)]
    arrays = prepare(reqs, model.type_lookup, PayloadPolicy()).arrays
    cols = model.builder.build(arrays.as_of, arrays.created_at, arrays.raw, arrays.events, arrays.stages)
    contrib = model.contributions(model.bundle.encoder.transform(cols))
    gone = {f: missing_mask(cols[f]) for f in model.reasons.features_}

    def missing_reasons(telling: dict[str, int] | None) -> list[tuple[str, int]]:
        out = []
        for i, (pos, neg) in enumerate(model.reasons.top_reasons(contrib, cols, 3, telling)):
            out += [(r.feature, 1) for r in pos if gone[r.feature][i]]
            out += [(r.feature, -1) for r in neg if gone[r.feature][i]]
        return out

    assert missing_reasons(None), "without the map some missing values are reasons (else this test is idle)"
    telling = model.informative_missing
    assert all(telling.get(f) == sign for f, sign in missing_reasons(telling))
    served = model.score(reqs, True, policy=PayloadPolicy()).results
    got = [[r["feature"] for r in served[i]["reasons"]["positive"]] for i in range(len(reqs))]
    want = [[r.feature for r in pos] for pos, _ in model.reasons.top_reasons(contrib, cols, 3, telling)]
    assert got == want
