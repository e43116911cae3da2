"""The columnar batch path equals ``payload.prepare`` lead by lead: the same scores, errors and counts.

``columnar.prepare_batch_text`` converts a batch's timestamps at once and checks with array operations;
any lead failing a check goes through ``prepare`` itself. Each case below edits real payloads so that
one of those checks (or a normalisation) matters, and compares the whole outcome with the reference
path (``parse_batch`` -> ``score_requests``).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

from leadscore.serve.columnar import prepare_batch_text
from leadscore.serve.decode import decode_batch_text, parse_batch
from leadscore.serve.isotime import epoch_seconds_many
from leadscore.serve.payload import PayloadPolicy, epoch_seconds, iso_utc
from leadscore.serve.scorer import LoadedModel, load_model, score_prepared, score_requests

NOW = 1_900_000_000.0  # a fixed "now" for leads without as_of (2030-03-17)


@pytest.fixture(scope="module")
def model(bundle_dir: Path) -> LoadedModel:
    return load_model(bundle_dir)


def outcomes(model: LoadedModel, body: dict[str, Any], policy: PayloadPolicy) -> tuple[Any, Any]:
    """(columnar outcome, reference outcome) for a batch body, with reasons."""
    raw = orjson.dumps(body)
    text = decode_batch_text(raw)
    assert text is not None
    prepared = prepare_batch_text(text, model.type_lookup, policy, now=NOW, memo={})
    assert prepared is not None
    got = score_prepared(model, prepared, explain=True)
    batch = parse_batch(raw)
    ref = score_requests(
        model, batch.leads, policy, True, default_as_of=batch.as_of, now=NOW, loc_prefix=("leads",)
    )
    return got, ref


def assert_same(got: Any, ref: Any) -> None:
    assert got.results == ref.results
    assert got.errors == ref.errors
    assert got.unknown_event_types == ref.unknown_event_types


def _with_events(p: dict[str, Any]) -> bool:
    return len(p["events"]) >= 3


Edit = Callable[[list[dict[str, Any]]], None]


def late_event(ps: list[dict[str, Any]]) -> None:
    p = next(p for p in ps if _with_events(p))
    p["events"][1]["ts"] = "2031-01-01T00:00:00Z"


def created_after(ps: list[dict[str, Any]]) -> None:
    ps[2]["lead"]["created_at"] = "2031-01-01T00:00:00+02:00"


def unknown_types(ps: list[dict[str, Any]]) -> None:
    evs = [p for p in ps if _with_events(p)]
    evs[0]["events"][0]["event_type"] = " Page_View "  # normalised to a known type, as the loader does
    evs[1]["events"][0]["event_type"] = "zoom_call"
    evs[1]["events"][2]["event_type"] = "zoom_call"


def stages(ps: list[dict[str, Any]]) -> None:
    with_stages = [p for p in ps if p["stage_history"]]
    with_stages[0]["stage_history"][0]["stage"] = "Negotiation"
    with_stages[-1]["stage_history"][0]["stage"] = " SQL "
    ps[3]["stage_history"].append({"stage": "mql", "ts": "2031-01-01T00:00:00"})


def attributes(ps: list[dict[str, Any]]) -> None:
    ps[0]["account"] = None
    ps[1]["lead"]["job_title"] = "  VP of Sales  "
    ps[1]["lead"]["country"] = ""
    ps[2]["lead"].pop("email_domain", None)
    ps[2]["lead"]["email"] = "Jane.Doe@Gmail.COM "
    ps[3]["lead"]["email_domain"] = "  "
    ps[3]["lead"]["email"] = "x@Competitor-Example.com"
    ps[4]["lead"]["seniority"] = " Director "
    if ps[5].get("account"):
        ps[5]["account"]["tech_stack"] = ["hubspot", "salesforce"]
        ps[6]["account"]["industry"] = "  Brand New Industry "
        ps[6]["account"]["employees"] = None


def odd_timestamps(ps: list[dict[str, Any]]) -> None:
    """Forms outside the fast grammar that pydantic accepts: read by pydantic, one by one."""
    evs = [p for p in ps if _with_events(p)]
    evs[0]["events"][0]["ts"] = evs[0]["events"][0]["ts"].replace("T", " ")
    evs[1]["events"][0]["ts"] = evs[1]["events"][0]["ts"][:19] + ".9999999Z"
    evs[2]["events"][1]["ts"] = evs[2]["events"][1]["ts"][:19] + "+0130"
    evs[3]["events"][0]["ts"] = evs[3]["events"][0]["ts"][:19].lower() + "z"


def own_and_batch_as_of(ps: list[dict[str, Any]]) -> None:
    for p in ps[::2]:
        p.pop("as_of", None)


def no_as_of(ps: list[dict[str, Any]]) -> None:
    for p in ps:
        p.pop("as_of", None)


CASES: dict[str, tuple[Edit, dict[str, Any], bool]] = {
    # name: (edit of the payloads, policy, batch-level as_of)
    "clean": (lambda ps: None, {}, False),
    "late event": (late_event, {}, False),
    "created after as_of": (created_after, {}, False),
    "unknown types ignored": (unknown_types, {"unknown_event_types": "ignore"}, False),
    "unknown types rejected": (unknown_types, {"unknown_event_types": "reject"}, False),
    "too many events": (lambda ps: None, {"max_events_per_lead": 5}, False),
    "too many stage rows": (lambda ps: None, {"max_stage_rows_per_lead": 1}, False),
    "stages": (stages, {}, False),
    "attributes": (attributes, {}, False),
    "odd timestamps": (odd_timestamps, {}, False),
    "own and batch as_of": (own_and_batch_as_of, {}, True),
    "now as as_of": (no_as_of, {}, False),
}


@pytest.mark.parametrize("name", list(CASES))
def test_columnar_equals_prepare(model: LoadedModel, sample_payloads: list[dict], name: str) -> None:
    edit, policy, batch_as_of = CASES[name]
    payloads = copy.deepcopy(sample_payloads)
    edit(payloads)
    body: dict[str, Any] = {"leads": payloads}
    if batch_as_of:  # a day after the leads' own as_of: the leads without one are scored later
        body["as_of"] = iso_utc(epoch_seconds(datetime.fromisoformat(sample_payloads[0]["as_of"])) + 86_400)
    got, ref = outcomes(model, body, PayloadPolicy(**policy))
    assert_same(got, ref)
    if name == "odd timestamps":  # these took the pydantic road, and agree
        odd = [e["ts"] for p in payloads for e in p["events"][:2]]
        assert not epoch_seconds_many(odd)[1].all()
    elif name != "clean":
        # The case really exercised something: at least one lead differs from the clean batch.
        clean, _ = outcomes(model, {"leads": sample_payloads}, PayloadPolicy())
        assert got.results != clean.results or got.errors


def test_clean_batch_is_scored_whole(model: LoadedModel, sample_payloads: list[dict]) -> None:
    got, _ = outcomes(model, {"leads": sample_payloads}, PayloadPolicy())
    assert sorted(got.results) == list(range(len(sample_payloads)))
    assert not got.errors


def test_a_timestamp_pydantic_refuses_sends_the_batch_back(
    model: LoadedModel, sample_payloads: list[dict]
) -> None:
    for bad in ("2024-02-30T00:00:00Z", "1714658580", "yesterday"):
        payloads = copy.deepcopy(sample_payloads)
        payloads[4]["lead"]["created_at"] = bad
        text = decode_batch_text(orjson.dumps({"leads": payloads}))
        assert text is not None
        assert prepare_batch_text(text, model.type_lookup, PayloadPolicy(), now=NOW) is None


def test_the_memo_is_filled_and_reused(model: LoadedModel, sample_payloads: list[dict]) -> None:
    text = decode_batch_text(orjson.dumps({"leads": sample_payloads}))
    assert text is not None
    memo: dict[str, dict[Any, Any]] = {}
    first = prepare_batch_text(text, model.type_lookup, PayloadPolicy(), now=NOW, memo=memo)
    assert memo["_text"]
    again = prepare_batch_text(text, model.type_lookup, PayloadPolicy(), now=NOW, memo=memo)
    assert first is not None and again is not None
    assert first.raw == again.raw
    assert score_prepared(model, first, False).results == score_prepared(model, again, False).results


def test_the_api_batch_gives_pydantics_error_for_a_bad_timestamp(
    client: Any, sample_payloads: list[dict]
) -> None:
    payloads = copy.deepcopy(sample_payloads[:3])
    payloads[1]["events"] = [{"ts": "2024-13-01T00:00:00Z", "event_type": "page_view"}]
    res = client.post("/v1/score/batch", json={"leads": payloads})
    assert res.status_code == 200
    body = res.json()
    assert [r["status"] for r in body["results"]] == ["ok", "error", "ok"]
    (err,) = body["results"][1]["errors"]
    assert err["loc"] == ["body", "leads", 1, "events", 0, "ts"]


def test_invalid_utf8_in_an_ignored_field_is_left_to_pydantic(sample_payloads: list[dict]) -> None:
    body = orjson.dumps({"leads": sample_payloads[:2]})
    assert decode_batch_text(body) is not None
    bad = body.replace(b'"event_type"', b'"x":"\xff","event_type"', 1)
    assert bad != body and decode_batch_text(bad) is None
