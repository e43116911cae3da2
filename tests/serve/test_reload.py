"""Bundle reload: a good bundle is swapped in atomically, a bad one is refused and the old one serves on."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest
from fastapi.testclient import TestClient

from leadscore.models.bundle import MANIFEST, bundle_checksum, load_bundle, sha256_file
from leadscore.serve.payload import PayloadPolicy
from leadscore.serve.schemas import SCORE_ADAPTER
from leadscore.serve.scorer import Scorer
from tests.serve.api_helpers import metric
from tests.serve.pipeline import rewrite_bundle, shifted_calibrator

pytestmark = pytest.mark.slow


@pytest.fixture
def live_dir(bundle_dir: Path, tmp_path: Path) -> Path:
    """A copy of the session bundle that a test may replace or break."""
    dst = tmp_path / "models"
    shutil.copytree(bundle_dir, dst)
    return dst


def test_reload_swaps_in_a_new_bundle(
    make_client: Callable[..., TestClient], live_dir: Path, payload: dict
) -> None:
    client = make_client(bundle_dir=live_dir)
    before = client.post("/v1/score?explain=false", json=payload).json()
    old = load_bundle(live_dir).checksum
    rewrite_bundle(live_dir, live_dir, shifted_calibrator)  # "retrained", written in place atomically
    # Still the old model until told to reload.
    assert client.post("/v1/score?explain=false", json=payload).json() == before
    r = client.post("/v1/admin/reload")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["reloaded"] is True and body["previous_checksum"] == old
    assert body["bundle_checksum"] == load_bundle(live_dir).checksum != old
    after = client.post("/v1/score?explain=false", json=payload).json()
    assert after["bundle_checksum"] == body["bundle_checksum"] and after["model_version"] == "retrained-test"
    assert after["probabilities"]["sql"] != before["probabilities"]["sql"]
    assert client.get("/ready").json()["bundle_checksum"] == body["bundle_checksum"]
    assert metric(client, "leadscore_bundle_reloads_total", result="ok", trigger="admin") == 1
    assert (
        metric(
            client,
            "leadscore_model_info",
            model_version="retrained-test",
            bundle_checksum=body["bundle_checksum"],
        )
        == 1
    )


@pytest.mark.parametrize("damage", ["tamper", "extra_file", "missing_file", "gone"])
def test_a_bad_bundle_is_refused_and_the_old_one_serves(
    make_client: Callable[..., TestClient], live_dir: Path, payload: dict, damage: str
) -> None:
    client = make_client(bundle_dir=live_dir)
    before = client.post("/v1/score?explain=false", json=payload).json()
    if damage == "tamper":
        path = live_dir / "thresholds.json"
        path.write_text(path.read_text() + "\n")  # one byte changed after the manifest was written
        why = "checksum mismatch for thresholds.json"
    elif damage == "extra_file":
        (live_dir / "model_evil.pkl").write_bytes(b"\x80\x04")
        why = "files not listed in the manifest"
    elif damage == "missing_file":
        (live_dir / "model_sql.txt").unlink()
        why = "bundle file missing: model_sql.txt"
    else:
        shutil.rmtree(live_dir)
        why = "no manifest.json"
    r = client.post("/v1/admin/reload")
    assert r.status_code == 409
    body = r.json()
    assert body["reloaded"] is False and why in body["error"]
    assert body["bundle_checksum"] == before["bundle_checksum"]  # still serving the old one
    assert client.post("/v1/score?explain=false", json=payload).json() == before
    assert client.get("/ready").status_code == 200
    assert metric(client, "leadscore_bundle_reloads_total", result="refused", trigger="admin") == 1


def test_in_flight_requests_finish_on_the_model_they_took(live_dir: Path, payload: dict) -> None:
    scorer = Scorer(live_dir)
    assert scorer.reload().reloaded
    taken = scorer.model  # what a request holds while it runs
    rewrite_bundle(live_dir, live_dir, shifted_calibrator)
    assert scorer.reload().reloaded and scorer.model is not taken
    req = SCORE_ADAPTER.validate_json(orjson.dumps(payload))
    old = taken.score([req], True, policy=PayloadPolicy()).results[0]
    new = scorer.model.score([req], True, policy=PayloadPolicy()).results[0]
    assert old["bundle_checksum"] == taken.checksum != new["bundle_checksum"]
    assert old["probabilities"] != new["probabilities"]


def _resign(folder: Path) -> None:
    """Rewrite the manifest's checksums for the files as they are now (a consistent but bad bundle)."""
    manifest = json.loads((folder / MANIFEST).read_text())
    files = {name: sha256_file(folder / name) for name in manifest["files"]}
    manifest["files"], manifest["bundle_checksum"] = files, bundle_checksum(files)
    (folder / MANIFEST).write_text(json.dumps(manifest))


def _manifest(folder: Path, change: Callable[[dict], object]) -> None:
    manifest = json.loads((folder / MANIFEST).read_text())
    (folder / MANIFEST).write_text(json.dumps(change(manifest)))


def _entry(folder: Path, name: str) -> None:
    """Add a manifest entry ``name`` with a matching checksum of a file outside the bundle."""
    outside = folder.parent / "outside.txt"
    outside.write_text("not part of the bundle")

    def add(m: dict) -> dict:
        m["files"][name] = sha256_file(outside)
        m["bundle_checksum"] = bundle_checksum(m["files"])
        return m

    _manifest(folder, add)


def _symlink(folder: Path, target: Path) -> None:
    """Replace thresholds.json by a symlink to an identical copy at ``target`` (checksums still match)."""
    target.write_bytes((folder / "thresholds.json").read_bytes())
    (folder / "thresholds.json").unlink()
    os.symlink(target, folder / "thresholds.json")


def _json_file(name: str, value: object) -> Callable[[Path], None]:
    def damage(folder: Path) -> None:
        (folder / name).write_text(json.dumps(value))
        _resign(folder)

    return damage


#: A malformed bundle of every kind met in the wild or by an attacker -> (damage, words in the error)
MALFORMED: dict[str, tuple[Callable[[Path], None], str]] = {
    "manifest not UTF-8": (lambda f: (f / MANIFEST).write_bytes(b"\xff\xfe{}"), "UTF-8"),
    "manifest is []": (lambda f: (f / MANIFEST).write_text("[]"), "JSON object"),
    "manifest is null": (lambda f: (f / MANIFEST).write_text("null"), "JSON object"),
    "manifest files is a list": (
        lambda f: _manifest(f, lambda m: {**m, "files": list(m["files"])}),
        "`files`",
    ),
    "manifest checksum not a digest": (
        lambda f: _manifest(f, lambda m: {**m, "files": {k: 1 for k in m["files"]}}),
        "SHA-256",
    ),
    "entry ../": (lambda f: _entry(f, "../outside.txt"), "not a plain file name"),
    "entry absolute": (lambda f: _entry(f, "/etc/hostname"), "not a plain file name"),
    "symlink outside": (lambda f: _symlink(f, f.parent / "elsewhere.json"), "symbolic link"),
    "symlink inside": (lambda f: _symlink(f, f / "thresholds.copy"), "symbolic link"),
    "manifest is a symlink": (
        lambda f: (
            shutil.move(f / MANIFEST, f.parent / "m.json"),
            os.symlink(f.parent / "m.json", f / MANIFEST),
        ),
        "symbolic link",
    ),
    "metadata is a list": (_json_file("metadata.json", []), "metadata.json must be a JSON object"),
    "metadata targets is a string": (_json_file("metadata.json", {"targets": "sql"}), "invalid"),
    "calibrator is a list": (_json_file("calibrator_sql.json", [1, 2]), "calibrator_sql.json must be"),
    "calibrator without numbers": (
        _json_file("calibrator_sql.json", {"method": "sigmoid", "a": "x"}),
        "invalid",
    ),
    "thresholds stages not a list": (_json_file("thresholds.json", {"target": "sql", "stages": 3}), "stages"),
    "score_quantiles not numbers": (
        _json_file("thresholds.json", {"target": "sql", "stages": [], "score_quantiles": ["a"]}),
        "score_quantiles",
    ),
    "feature spec not an object": (_json_file("feature_spec.json", "x"), "feature_spec.json must be"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_every_malformed_bundle_is_refused_with_409_never_500(
    make_client: Callable[..., TestClient], live_dir: Path, payload: dict, case: str
) -> None:
    client = make_client(bundle_dir=live_dir)
    before = client.post("/v1/score?explain=false", json=payload).json()
    damage, words = MALFORMED[case]
    damage(live_dir)
    r = client.post("/v1/admin/reload")
    assert r.status_code == 409, r.text
    assert r.json()["reloaded"] is False and words in r.json()["error"], r.json()["error"]
    assert metric(client, "leadscore_bundle_reloads_total", result="refused", trigger="admin") == 1
    assert client.post("/v1/score?explain=false", json=payload).json() == before  # the old one serves on
    # and a server started on such a bundle is simply not ready (no paths in what it says)
    fresh = make_client(bundle_dir=live_dir)
    ready = fresh.get("/ready")
    assert ready.status_code == 503 and str(live_dir) not in ready.text
    assert metric(fresh, "leadscore_bundle_reloads_total", result="refused", trigger="startup") == 1
