"""Gated promotion, rollback and the model list, all recorded in the MLflow registry itself.

Everything lives on the registered model and its versions, so any MLflow client (and the UI) sees it:

* alias ``champion``: the version the service serves (``leadscore serve --model models:/<name>@champion``);
* registered-model tag ``champion_history``: JSON list of the versions that were champion, oldest first
  (``rollback`` returns to the one before the current);
* version tags ``gate.*``: the comparison that judged the version (decision, reasons, the champion it was
  compared with, its ROC-AUC interval), written by ``publish`` from ``reports/compare.json``;
* version tags ``promoted_at`` / ``promoted_by`` / ``promoted_reason`` / ``promoted_forced``, and
  ``rolled_back_*`` when a rollback demoted it;
* version tag ``thresholds_history``: thresholds-only changes of the same model (when, who, which run).

``promote`` moves the alias only when the version's gate said ``promote`` against the *current* champion;
``--force`` needs a reason, which is recorded.
"""

from __future__ import annotations

import getpass
import json
import os
from datetime import UTC, datetime
from typing import Any

from leadscore.models.source import parse_ref

CHAMPION = "champion"
CHALLENGER = "challenger"
#: MLflow caps tag values (5000 characters); JSON lists are trimmed (oldest first) to stay below this.
_TAG_LIMIT = 4500


class PromotionError(ValueError):
    """A promotion or rollback that the gate or the history does not allow; the message says why."""


def who(by: str | None = None) -> str:
    """The person (or job) acting: ``by``, else ``LEADSCORE_USER``, else the login name."""
    if by:
        return by
    try:
        return os.environ.get("LEADSCORE_USER") or getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _bounded_json(items: list[Any]) -> str:
    text = json.dumps(items, sort_keys=True)
    while len(text) > _TAG_LIMIT and len(items) > 1:
        items = items[1:]
        text = json.dumps(items, sort_keys=True)
    return text


def _json_tag(tags: dict[str, str] | None, key: str) -> list[Any]:
    try:
        value = json.loads((tags or {}).get(key) or "[]")
    except json.JSONDecodeError:
        return []
    return value if isinstance(value, list) else []


def champion_version(client: Any, name: str) -> str | None:
    aliases = client.get_registered_model(name).aliases or {}
    value = aliases.get(CHAMPION)
    return str(value) if value is not None else None


def move_champion(client: Any, name: str, version: str, by: str, reason: str, forced: bool = False) -> None:
    """Point ``champion`` at ``version`` and record who, when, why (history + version tags)."""
    model = client.get_registered_model(name)
    history = [str(v) for v in _json_tag(model.tags, "champion_history")]
    previous = (model.aliases or {}).get(CHAMPION)
    if previous is not None and (not history or history[-1] != str(previous)):
        history.append(str(previous))  # a champion set outside leadscore: keep it rollback-able
    client.set_registered_model_alias(name, CHAMPION, version)
    history.append(str(version))
    client.set_registered_model_tag(name, "champion_history", _bounded_json(history))
    for key, value in {
        "promoted_at": _now(),
        "promoted_by": by,
        "promoted_reason": reason,
        "promoted_forced": str(forced).lower(),
        "promoted_from": str(previous) if previous is not None else "none",
    }.items():
        client.set_model_version_tag(name, version, key, value)


def record_gate(client: Any, name: str, version: str, compare: dict[str, Any]) -> None:
    """Store a comparison's outcome on the version it judged (``gate.*`` tags)."""
    target = compare.get("target")
    champion = compare.get("champion") or {}
    auc = ((compare.get("challenger") or {}).get("metrics") or {}).get(target, {}).get("roc_auc") or {}
    diff = (compare.get("difference") or {}).get(target, {}).get("roc_auc") or {}
    tags = {
        "gate.decision": compare["decision"],
        "gate.reasons": _bounded_json(list(compare.get("reasons") or [])),
        "gate.champion_version": str(champion.get("version") or "none"),
        "gate.champion_model_version": str(champion.get("model_version") or "none"),
        "gate.target": str(target),
        "gate.roc_auc": json.dumps({"value": auc.get("value"), "ci": auc.get("ci")}),
        "gate.roc_auc_difference": json.dumps({"value": diff.get("value"), "ci": diff.get("ci")}),
        "gate.slice": json.dumps({k: compare.get("slice", {}).get(k) for k in ("start", "end", "rows")}),
    }
    for key, value in tags.items():
        client.set_model_version_tag(name, version, key, value)


def record_thresholds_update(
    client: Any, name: str, version: str, run_id: str, checksum: str, thresholds: Any, by: str | None = None
) -> None:
    """A thresholds-only change of ``version``: its bundle now comes from ``run_id``; recorded."""
    mv = client.get_model_version(name, version)
    history = _json_tag(mv.tags, "thresholds_history")
    stages = [
        {"name": s.get("name"), "probability": s.get("probability")}
        for s in ((thresholds or {}).get("stages") or [])
    ]
    history.append(
        {
            "at": _now(),
            "by": who(by),
            "run_id": run_id,
            "bundle_checksum": checksum,
            "previous_checksum": (mv.tags or {}).get("bundle_checksum"),
            "stages": stages,
        }
    )
    client.set_model_version_tag(name, version, "thresholds_history", _bounded_json(history))
    client.set_model_version_tag(name, version, "bundle_run_id", run_id)
    client.set_model_version_tag(name, version, "bundle_path", "bundle")
    client.set_model_version_tag(name, version, "bundle_checksum", checksum)


def _version_of(client: Any, name: str, version: str | None) -> Any:
    from mlflow.exceptions import MlflowException

    try:
        if version is None:
            return client.get_model_version_by_alias(name, CHALLENGER)
        return client.get_model_version(name, version)
    except MlflowException as exc:
        what = f"version {version}" if version else f"alias {CHALLENGER!r}"
        raise PromotionError(f"{name}: {what} not found in the registry ({exc.error_code})") from exc


def promote(
    client: Any,
    name: str,
    version: str | None = None,
    force: bool = False,
    reason: str | None = None,
    by: str | None = None,
) -> dict[str, Any]:
    """Make ``version`` (default: the ``challenger``) champion if its gate passed against the current
    champion; with ``force`` (and a reason) whatever the gate said. Returns what happened."""
    mv = _version_of(client, name, version)
    version = str(mv.version)
    current = champion_version(client, name)
    if current == version:
        raise PromotionError(f"{name} version {version} is already champion")
    tags = dict(mv.tags or {})
    decision = tags.get("gate.decision")
    compared_with = tags.get("gate.champion_version")
    if force:
        if not (reason or "").strip():
            raise PromotionError('--force needs --reason "...": a forced promotion is recorded with why')
    elif decision is None:
        raise PromotionError(
            f"{name} version {version} has no comparison recorded: run `leadscore compare` and "
            '`leadscore publish` (or `dvc repro`), or promote with --force --reason "..."'
        )
    elif decision != "promote":
        reasons = "; ".join(_json_tag(tags, "gate.reasons"))
        raise PromotionError(f"the gate kept {name} version {version} out: {reasons}")
    elif compared_with != (current or "none"):
        raise PromotionError(
            f"{name} version {version} was compared with champion {compared_with}, but the champion is now "
            f"{current or 'none'}: compare again (`dvc repro`) before promoting"
        )
    actor = who(by)
    why = reason or "; ".join(_json_tag(tags, "gate.reasons")) or "gate passed"
    move_champion(client, name, version, by=actor, reason=why, forced=force)
    return {"registered_model": name, "champion": version, "previous": current, "by": actor,
            "reason": why, "forced": force}  # fmt: skip


def rollback(client: Any, name: str, reason: str | None = None, by: str | None = None) -> dict[str, Any]:
    """Move ``champion`` back to the version before the current one in ``champion_history``."""
    model = client.get_registered_model(name)
    history = [str(v) for v in _json_tag(model.tags, "champion_history")]
    current = champion_version(client, name)
    if current is not None and history and history[-1] != current:
        history.append(current)
    if len(history) < 2:
        raise PromotionError(
            f"{name} has no previous champion to roll back to (history: {history or 'empty'})"
        )
    previous = history[-2]
    actor = who(by)
    why = reason or "rollback"
    client.set_registered_model_alias(name, CHAMPION, previous)
    client.set_registered_model_tag(name, "champion_history", _bounded_json(history[:-1]))
    if current is not None:
        for key, value in {
            "rolled_back_at": _now(),
            "rolled_back_by": actor,
            "rolled_back_reason": why,
        }.items():
            client.set_model_version_tag(name, current, key, value)
    client.set_model_version_tag(name, previous, "restored_at", _now())
    client.set_model_version_tag(name, previous, "restored_by", actor)
    return {"registered_model": name, "champion": previous, "previous": current, "by": actor, "reason": why}


def list_versions(client: Any, name: str) -> list[dict[str, Any]]:
    """Every version of ``name``, newest first: aliases, model hash, key metrics, gate, promotion."""
    versions = sorted(client.search_model_versions(f"name='{name}'"), key=lambda v: -int(v.version))
    by_version: dict[str, list[str]] = {}
    for alias, v in (client.get_registered_model(name).aliases or {}).items():
        by_version.setdefault(str(v), []).append(alias)  # search results do not carry aliases
    rows = []
    for mv in versions:
        tags = dict(mv.tags or {})
        metrics: dict[str, float] = {}
        try:
            run = client.get_run(tags.get("bundle_run_id") or mv.run_id)
            metrics = {
                k: round(v, 4)
                for k, v in run.data.metrics.items()
                if k.endswith((".model.roc_auc", ".model.ece", ".model.log_loss"))
            }
        except Exception:  # a deleted run must not break the listing
            metrics = {}
        rows.append(
            {
                "version": str(mv.version),
                "aliases": sorted(by_version.get(str(mv.version), [])),
                "model_version": tags.get("bundle_version"),
                "bundle_checksum": (tags.get("bundle_checksum") or "")[:12],
                "created": datetime.fromtimestamp(mv.creation_timestamp / 1000, UTC).isoformat(
                    timespec="seconds"
                ),
                "metrics": metrics,
                "gate": {
                    "decision": tags.get("gate.decision"),
                    "vs_champion": tags.get("gate.champion_version"),
                    "reasons": _json_tag(tags, "gate.reasons"),
                    "roc_auc": json.loads(tags["gate.roc_auc"]) if "gate.roc_auc" in tags else None,
                },
                "promoted": {k: tags.get(f"promoted_{k}") for k in ("at", "by", "reason", "forced", "from")}
                if "promoted_at" in tags
                else None,
                "rolled_back": {k: tags.get(f"rolled_back_{k}") for k in ("at", "by", "reason")}
                if "rolled_back_at" in tags
                else None,
                "thresholds_updates": _json_tag(tags, "thresholds_history"),
            }
        )
    return rows


def registry_client(uri: str | None = None) -> Any:
    from mlflow.tracking import MlflowClient

    from leadscore.models.registry import tracking_uri

    uri = uri or tracking_uri()
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def model_name(ref_or_name: str) -> str:
    """``models:/name@alias`` → name; a plain name stays."""
    parsed = parse_ref(ref_or_name) if ref_or_name.startswith("models:/") else None
    return parsed[0] if parsed else ref_or_name
