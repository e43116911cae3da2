"""Requests -> builder arrays: time zones, as_of checks, unknown event types, normalisation like the loader.

Hand-built payloads, no bundle needed: ``prepare`` only needs the spec's event types.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import numpy as np
import orjson
import pytest
from pydantic import ValidationError

from leadscore.config import load_params
from leadscore.features.spec import FeatureSpec
from leadscore.serve.payload import PayloadPolicy, epoch_seconds, event_type_lookup, iso_utc, prepare
from leadscore.serve.schemas import SCORE_ADAPTER, ScoreRequest, error_list

parse_score = SCORE_ADAPTER.validate_json
SPEC = FeatureSpec(load_params("params.yaml").features)
LOOKUP = event_type_lookup(SPEC.event_types)
AS_OF = "2025-06-01T00:00:00Z"
AS_OF_S = int(datetime(2025, 6, 1, tzinfo=UTC).timestamp())


def req(**parts: Any) -> ScoreRequest:
    body = {"lead": {"lead_id": "L1", "created_at": "2025-01-01T00:00:00Z"}, "as_of": AS_OF, **parts}
    return parse_score(orjson.dumps(body))


def errors_of(exc: pytest.ExceptionInfo[ValidationError]) -> list[tuple[tuple, str]]:
    """(location, type) of each error as the API reports it (without the leading ``body``)."""
    return [(tuple(e["loc"]), e["type"]) for e in error_list(exc.value, prefix=())]


def test_epoch_seconds_naive_is_utc_and_offsets_are_converted() -> None:
    naive = parse_score(b'{"lead": {"lead_id": "x", "created_at": "2025-06-01T12:00:00"}}')
    plus2 = parse_score(b'{"lead": {"lead_id": "x", "created_at": "2025-06-01T14:00:00+02:00"}}')
    zulu = parse_score(b'{"lead": {"lead_id": "x", "created_at": "2025-06-01T12:00:00.999Z"}}')
    secs = {epoch_seconds(r["lead"]["created_at"]) for r in (naive, plus2, zulu)}
    assert secs == {AS_OF_S + 12 * 3600}  # and fractions of a second are floored, like the loader
    assert iso_utc(AS_OF_S) == "2025-06-01T00:00:00Z"


def test_arrays_for_several_leads() -> None:
    a = req(
        events=[
            {"ts": "2025-05-01T00:00:00Z", "event_type": "pricing_view"},
            {"ts": "2025-05-02T00:00:00", "event_type": "Email_Open "},
        ],
        stage_history=[{"stage": "MQL", "ts": "2025-05-03T00:00:00Z"}],
    )
    b = req(
        events=[{"ts": "2025-05-05T00:00:00Z", "event_type": "page_view", "properties": {"path": "/"}}],
        account={"industry": " Software ", "employees": 120, "tech_stack": ["aws", "hubspot"]},
    )
    p = prepare([a, b], LOOKUP, PayloadPolicy())
    arr = p.arrays
    assert p.errors == {} and p.positions == [0, 1] and arr.lead_ids == ["L1", "L1"]
    assert arr.as_of.tolist() == [AS_OF_S, AS_OF_S]
    assert arr.events.lead.tolist() == [0, 0, 1]
    idx = SPEC.event_types.index
    assert arr.events.type_code.tolist() == [idx("pricing_view"), idx("email_open"), idx("page_view")]
    assert arr.stages.stage.tolist() == ["mql"] and arr.stages.lead.tolist() == [0]
    assert arr.raw["_industry"].tolist() == [None, "Software"]  # stripped; lower-cased by the builder
    assert arr.raw["tech_stack"].tolist() == [None, "aws;hubspot"]
    assert arr.raw["employees"].tolist() == [None, 120]


def test_email_domain_like_the_loader() -> None:
    given = req(
        lead={
            "lead_id": "a",
            "created_at": "2025-01-01T00:00:00Z",
            "email": "x@Acme.COM ",
            "email_domain": " Other.io",
        }
    )
    derived = req(lead={"lead_id": "b", "created_at": "2025-01-01T00:00:00Z", "email": "Dana@Acme.COM"})
    none = req(
        lead={"lead_id": "c", "created_at": "2025-01-01T00:00:00Z", "email": "no-at-sign", "job_title": "  "}
    )
    arr = prepare([given, derived, none], LOOKUP, PayloadPolicy()).arrays
    assert arr.raw["email_domain"].tolist() == ["other.io", "acme.com", None]
    assert arr.raw["job_title"].tolist() == [None, None, None]  # blank text is missing, as in the pipeline


def test_timestamps_after_as_of_are_errors_with_locations() -> None:
    bad = req(
        lead={"lead_id": "L9", "created_at": "2025-07-01T00:00:00Z"},
        events=[
            {"ts": "2025-05-01T00:00:00Z", "event_type": "page_view"},
            {"ts": "2025-06-01T00:00:01Z", "event_type": "page_view"},
        ],
        stage_history=[{"stage": "mql", "ts": "2025-06-02T00:00:00+00:00"}],
    )
    at_as_of = req(events=[{"ts": AS_OF, "event_type": "page_view"}])  # allowed; not counted by the builder
    p = prepare([bad, at_as_of], LOOKUP, PayloadPolicy(), loc_prefix=("leads",))
    assert p.positions == [1]
    locs = [(e["loc"], e["type"]) for e in p.errors[0]]
    assert locs == [
        (["body", "leads", 0, "lead", "created_at"], "after_as_of"),
        (["body", "leads", 0, "events", 1, "ts"], "after_as_of"),
        (["body", "leads", 0, "stage_history", 0, "ts"], "after_as_of"),
    ]


def test_default_as_of_is_now_with_clock_skew_tolerance() -> None:
    now = AS_OF_S + 0.7
    r = parse_score(
        orjson.dumps(
            {
                "lead": {"lead_id": "x", "created_at": "2025-01-01T00:00:00Z"},
                "events": [
                    {"ts": "2025-06-01T00:04:00Z", "event_type": "page_view"}
                ],  # 4 min 'in the future'
            }
        )
    )
    ok = prepare([r], LOOKUP, PayloadPolicy(clock_skew_seconds=300), now=now)
    assert ok.errors == {} and ok.arrays.as_of.tolist() == [AS_OF_S]
    strict = prepare([r], LOOKUP, PayloadPolicy(clock_skew_seconds=60), now=now)
    assert strict.errors[0][0]["loc"] == ["body", "events", 0, "ts"]
    # an explicit batch-level as_of is strict
    batch = prepare([r], LOOKUP, PayloadPolicy(), default_as_of=datetime(2025, 6, 1, tzinfo=UTC))
    assert batch.errors[0][0]["type"] == "after_as_of"


def test_unknown_event_types_ignored_or_rejected_and_counted() -> None:
    r = req(
        events=[
            {"ts": "2025-05-01T00:00:00Z", "event_type": "tiktok_like"},
            {"ts": "2025-05-01T00:00:00Z", "event_type": "page_view"},
            {"ts": "2025-05-02T00:00:00Z", "event_type": "TikTok_Like"},
        ]
    )
    ignored = prepare([r], LOOKUP, PayloadPolicy(unknown_event_types="ignore"))
    assert ignored.errors == {} and ignored.unknown_event_types == {"tiktok_like": 2}
    assert ignored.arrays.events.type_code.tolist() == [SPEC.event_types.index("page_view")]
    rejected = prepare([r], LOOKUP, PayloadPolicy(unknown_event_types="reject"))
    assert rejected.unknown_event_types == {"tiktok_like": 2}
    assert [e["loc"] for e in rejected.errors[0]] == [
        ["body", "events", 0, "event_type"],
        ["body", "events", 2, "event_type"],
    ]


def test_contract_types_outside_the_spec_are_known_not_counted() -> None:
    lookup = event_type_lookup(("page_view",))  # a spec that uses one type only
    r = req(events=[{"ts": "2025-05-01T00:00:00Z", "event_type": "pricing_view"}])
    p = prepare([r], lookup, PayloadPolicy(unknown_event_types="reject"))
    assert p.errors == {} and p.unknown_event_types == {}
    assert p.arrays.events.type_code.tolist() == [-1]


def test_unknown_stage_and_limits() -> None:
    r = req(
        stage_history=[{"stage": "hot", "ts": "2025-05-01T00:00:00Z"}],
        events=[{"ts": "2025-05-01T00:00:00Z", "event_type": "page_view"}] * 3,
    )
    p = prepare([r], LOOKUP, PayloadPolicy(max_events_per_lead=2))
    assert [(e["loc"], e["type"]) for e in p.errors[0]] == [
        (["body", "events"], "too_many_events"),
        (["body", "stage_history", 0, "stage"], "unknown_stage"),
    ]


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"lead": {"lead_id": "x"}}, [(("lead", "created_at"), "missing")]),
        ({"lead": {"lead_id": "x", "created_at": 1717200000}}, [(("lead", "created_at"), "string_type")]),
        (
            {"lead": {"lead_id": "x", "created_at": "yesterday"}},
            [(("lead", "created_at"), "datetime_format")],
        ),
        (  # an epoch in a string: seconds or milliseconds? refused, like epoch numbers
            {"lead": {"lead_id": "x", "created_at": "1717200000000"}},
            [(("lead", "created_at"), "datetime_format")],
        ),
        (
            {
                "lead": {"lead_id": "x", "created_at": AS_OF},
                "events": [{"ts": "1717200000", "event_type": "x"}],
            },
            [(("events", 0, "ts"), "datetime_format")],
        ),
        (
            {"lead": {"lead_id": "x", "created_at": "2025-06-01"}},
            [(("lead", "created_at"), "datetime_format")],
        ),
        (
            {"lead": {"lead_id": "x", "created_at": "2025-13-01T00:00:00Z"}},
            [(("lead", "created_at"), "datetime_from_date_parsing")],
        ),
        (
            {"lead": {"lead_id": "x", "created_at": AS_OF, "employes": 5}},
            [(("lead", "employes"), "extra_forbidden")],
        ),
        (
            {"lead": {"lead_id": "x", "created_at": AS_OF}, "account": {"employees": "many"}},
            [(("account", "employees"), "float_type")],
        ),
        (
            {"lead": {"lead_id": "x", "created_at": AS_OF}, "account": {"employees": 12.5}},
            [(("account", "employees"), "multiple_of")],
        ),
        (
            {"lead": {"lead_id": "x", "created_at": AS_OF}, "account": {"annual_revenue": -1}},
            [(("account", "annual_revenue"), "greater_than_equal")],
        ),
        (
            {"lead": {"lead_id": "x", "created_at": AS_OF}, "events": [{"ts": AS_OF}]},
            [(("events", 0, "event_type"), "missing")],
        ),
    ],
)
def test_field_level_validation_errors(body: dict, expected: list) -> None:
    with pytest.raises(ValidationError) as exc:
        parse_score(orjson.dumps(body))
    assert errors_of(exc) == expected


@pytest.mark.parametrize("literal", [b"NaN", b"Infinity", b"-Infinity", b"1e999", b'"nan"'])
def test_non_finite_numbers_are_rejected(literal: bytes) -> None:
    body = (
        b'{"lead": {"lead_id": "x", "created_at": "2025-01-01T00:00:00Z"}, "account": {"annual_revenue": '
        + literal
        + b"}}"
    )
    with pytest.raises(ValidationError) as exc:
        parse_score(body)
    assert errors_of(exc)[0][0] == ("account", "annual_revenue")


def test_extra_event_fields_are_accepted() -> None:
    r = req(
        events=[
            {
                "ts": "2025-05-01T00:00:00Z",
                "event_type": "page_view",
                "event_id": "E1",
                "properties": {"path": "/pricing", "nested": [1, 2, {"a": None}]},
            }
        ]
    )
    assert np.array_equal(
        prepare([r], LOOKUP, PayloadPolicy()).arrays.events.ts,
        [int(datetime(2025, 5, 1, tzinfo=UTC).timestamp())],
    )


def test_years_below_1000_keep_four_digits() -> None:
    """ISO-8601 years have four digits; ``strftime("%Y")`` would write 999."""
    seconds = epoch_seconds(
        parse_score(b'{"lead": {"lead_id": "x", "created_at": "0999-03-04T05:06:07Z"}}')["lead"]["created_at"]
    )
    assert iso_utc(seconds) == "0999-03-04T05:06:07Z"
    assert iso_utc(0) == "1970-01-01T00:00:00Z"
