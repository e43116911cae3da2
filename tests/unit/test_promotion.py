"""Gated promotion, rollback, thresholds-only updates and registry bundle fetching on a local MLflow store
(SQLite in a temp folder; bundles are small checksummed folders, their content is not loaded here)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from leadscore.models.bundle import BundleError, write_bundle
from leadscore.models.promotion import (
    PromotionError,
    list_versions,
    promote,
    record_gate,
    registry_client,
    rollback,
)
from leadscore.models.registry import _register
from leadscore.models.source import fetch_bundle
from leadscore.serve.source import RegistrySource, poll_alias

pytestmark = pytest.mark.slow  # a real MLflow store: a few seconds
NAME = "lead-propensity"


@pytest.fixture
def client(tmp_path: Path):
    return registry_client(f"sqlite:///{tmp_path}/mlflow.db")


def _publish(client, tmp_path: Path, model: str, thresholds: float = 0.5) -> tuple[str, str, str]:
    """Log a tiny bundle as a run and register it like ``publish`` does; (version, action, checksum)."""
    folder = tmp_path / f"b-{model}-{thresholds}"
    checksum = write_bundle(
        folder, {"model_sql.txt": model, "thresholds.json": json.dumps({"p": thresholds})}
    )
    exp = client.get_experiment_by_name("t") or client.get_experiment(client.create_experiment("t"))
    run = client.create_run(exp.experiment_id)
    client.log_artifacts(run.info.run_id, str(folder), "bundle")
    client.set_terminated(run.info.run_id)
    stages = {"stages": [{"name": "hot", "probability": thresholds}]}
    version, _, action = _register(client, NAME, run.info.run_id, model, checksum, stages)
    return version, action, checksum


def _gate(decision: str, champion: str | None) -> dict:
    return {
        "decision": decision,
        "reasons": [f"test says {decision}"],
        "target": "sql",
        "champion": {"version": champion} if champion else None,
        "challenger": {"metrics": {"sql": {"roc_auc": {"value": 0.8, "ci": [0.75, 0.85]}}}},
        "slice": {"start": "a", "end": "b", "rows": 10},
    }


def test_promote_follows_the_gate_and_records_who_and_why(client, tmp_path: Path) -> None:
    v1, action, _ = _publish(client, tmp_path, "m1")
    assert (v1, action) == ("1", "registered")
    rows = list_versions(client, NAME)
    assert rows[0]["aliases"] == ["challenger", "champion"] and rows[0]["promoted"]["by"] == "publish"

    v2, _, _ = _publish(client, tmp_path, "m2")
    with pytest.raises(PromotionError, match="no comparison"):
        promote(client, NAME)
    record_gate(client, NAME, v2, _gate("keep", "1"))
    with pytest.raises(PromotionError, match="gate kept"):
        promote(client, NAME)
    record_gate(client, NAME, v2, _gate("promote", "9"))
    with pytest.raises(PromotionError, match="compare again"):
        promote(client, NAME)
    record_gate(client, NAME, v2, _gate("promote", "1"))
    done = promote(client, NAME, by="alice")
    assert done["champion"] == "2" and done["previous"] == "1" and not done["forced"]
    with pytest.raises(PromotionError, match="already champion"):
        promote(client, NAME, version="2")

    _publish(client, tmp_path, "m3")
    with pytest.raises(PromotionError, match="--reason"):
        promote(client, NAME, force=True)
    promote(client, NAME, force=True, reason="urgent fix", by="bob")
    rows = {r["version"]: r for r in list_versions(client, NAME)}
    assert rows["3"]["promoted"] == {"at": rows["3"]["promoted"]["at"], "by": "bob", "reason": "urgent fix",
                                     "forced": "true", "from": "2"}  # fmt: skip
    assert rows["2"]["promoted"]["by"] == "alice" and rows["2"]["gate"]["decision"] == "promote"

    # rollback walks the champion history back: 3 -> 2 -> 1, then there is nothing left
    assert rollback(client, NAME, reason="bad week", by="carol")["champion"] == "2"
    assert list_versions(client, NAME)[0]["rolled_back"]["reason"] == "bad week"
    assert rollback(client, NAME)["champion"] == "1"
    with pytest.raises(PromotionError, match="no previous champion"):
        rollback(client, NAME)


def test_thresholds_only_change_updates_the_same_version(client, tmp_path: Path) -> None:
    _, _, first = _publish(client, tmp_path, "m1", thresholds=0.5)
    again = _publish(client, tmp_path, "m1", thresholds=0.5)
    assert again == ("1", "unchanged", first)
    v, action, second = _publish(client, tmp_path, "m1", thresholds=0.3)
    assert (v, action) == ("1", "thresholds_updated") and second != first
    rows = list_versions(client, NAME)
    assert len(rows) == 1
    update = rows[0]["thresholds_updates"][0]
    assert update["previous_checksum"] == first and update["bundle_checksum"] == second
    assert update["stages"] == [{"name": "hot", "probability": 0.3}]
    # the champion reference now resolves to the new thresholds
    got = fetch_bundle(f"models:/{NAME}@champion", tmp_path / "cache", f"sqlite:///{tmp_path}/mlflow.db")
    assert got.checksum == second and json.loads((got.path / "thresholds.json").read_text()) == {"p": 0.3}


def test_fetch_verifies_and_refuses_tampering(client, tmp_path: Path) -> None:
    _publish(client, tmp_path, "m1")
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    got = fetch_bundle(f"models:/{NAME}@champion", tmp_path / "cache", uri)
    assert got.version == "1" and got.alias == "champion"
    (got.path / "model_sql.txt").write_text("tampered")  # a corrupted cache copy is fetched again
    again = fetch_bundle(f"models:/{NAME}@champion", tmp_path / "cache", uri)
    assert (again.path / "model_sql.txt").read_text() == "m1"
    # the registry's recorded checksum must match the artifact's manifest
    client.set_model_version_tag(NAME, "1", "bundle_checksum", "0" * 64)
    with pytest.raises(BundleError, match="registry recorded"):
        fetch_bundle(f"models:/{NAME}/1", tmp_path / "other", uri)
    with pytest.raises(BundleError, match="does not exist"):
        fetch_bundle(f"models:/{NAME}@nope", tmp_path / "cache", uri)


def test_poll_reloads_only_when_the_alias_moved(tmp_path: Path) -> None:
    class Fake(RegistrySource):
        def __init__(self) -> None:
            super().__init__("models:/x@champion", tmp_path)
            self.version = "1"
            self.answers = iter(["1", "1", "2"])

        def current_version(self) -> str | None:
            return next(self.answers, self.version)

    source = Fake()
    reloads: list[str] = []

    async def reload() -> None:
        reloads.append("reload")
        source.version = "2"

    async def main() -> None:
        task = asyncio.ensure_future(poll_alias(source, 0.01, reload))
        while not reloads:
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.05)
        task.cancel()

    asyncio.run(main())
    assert reloads == ["reload"]
