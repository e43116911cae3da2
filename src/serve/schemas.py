"""Request and response models of the scoring API (pydantic 2), and the example a CRM integrator copies.

These request models are the contract: every body is validated here (``validate_json``), which gives
the field-level 422 errors. They are strict where a silent coercion would change a score: timestamps
must be ISO-8601 strings (an epoch number is ambiguous: seconds or milliseconds?), numbers must be finite
JSON numbers, unknown fields are errors in the lead and the account (a misspelt ``employes`` would
otherwise be scored as missing). Naive timestamps are UTC; offsets are converted. Checks that need
``as_of`` or the server settings (timestamps after ``as_of``, unknown event types, per-lead limits) run
in ``leadscore.serve.payload``.

Responses are built as plain dicts and serialised with orjson on the hot path; the response models here
document them in OpenAPI and are checked against real responses in the tests.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Literal, NotRequired

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    GetCoreSchemaHandler,
    GetJsonSchemaHandler,
    TypeAdapter,
    ValidationError,
    with_config,
)
from pydantic_core import CoreSchema, core_schema
from typing_extensions import TypedDict

#: What a timestamp must look like before it is parsed: a date and a time of day (epoch numbers and epoch
#: digit strings are ambiguous, seconds or milliseconds?, so they are refused; pydantic alone would read
#: "1714658580000" as milliseconds). Checked and parsed inside pydantic-core (no Python per value).
TIMESTAMP_HELP = (
    "timestamps must be ISO-8601 date-times such as 2025-06-01T09:30:00Z (a date and a time of day; "
    "epoch numbers are refused: seconds or milliseconds?)"
)
ISO_DATETIME = r"^\d{4}-\d\d-\d\d[Tt ]\d\d:\d\d"


class _IsoText:
    """A JSON string matching ``ISO_DATETIME``, then parsed as a datetime (both steps in pydantic-core)."""

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler) -> CoreSchema:
        return core_schema.chain_schema([core_schema.str_schema(pattern=ISO_DATETIME), handler(source)])

    def __get_pydantic_json_schema__(self, schema: CoreSchema, handler: GetJsonSchemaHandler) -> Any:
        return {"type": "string", "format": "date-time"}


#: An ISO-8601 date-time string; naive values are taken as UTC, offsets are converted to UTC.
Timestamp = Annotated[
    datetime,
    _IsoText(),
    Field(description="ISO-8601 date-time, e.g. 2025-06-01T09:30:00Z; without an offset it is taken as UTC."),
]
Text = Annotated[str | None, Field(max_length=512)]
#: A JSON number (not a string, not a boolean), finite, not negative.
Amount = Annotated[float | None, Field(strict=True, ge=0)]

#: Requests are TypedDicts, not models: pydantic-core validates them as fast as it parses JSON and hands
#: back plain dicts (2x faster than models for a batch of 1,000 leads), with the same error locations.
_STRICT = ConfigDict(extra="forbid", allow_inf_nan=False)
#: Event and stage rows may carry CRM fields of their own (event_id, properties, owner, ...): accepted and
#: ignored without being materialised; the fields below are still checked.
_OPEN = ConfigDict(extra="ignore", allow_inf_nan=False)


@with_config(_STRICT)
class LeadIn(TypedDict):
    """The person: CRM lead/contact fields. Names and the e-mail address never influence the score."""

    lead_id: Annotated[str, Field(min_length=1, max_length=256)]
    created_at: Timestamp
    account_id: NotRequired[Text]
    email: NotRequired[
        Annotated[Text, Field(description="Only its domain is used (company, personal, competitor).")]
    ]
    email_domain: NotRequired[
        Annotated[Text, Field(description="Takes precedence over the domain of `email`.")]
    ]
    job_title: NotRequired[Text]
    seniority: NotRequired[
        Annotated[Text, Field(description="CRM value; if absent or unknown, parsed from the title.")]
    ]
    department: NotRequired[
        Annotated[Text, Field(description="CRM value; if absent or unknown, parsed from the title.")]
    ]
    country: NotRequired[Text]
    lead_source: NotRequired[Text]
    first_name: NotRequired[Text]
    last_name: NotRequired[Text]


@with_config(_STRICT)
class AccountIn(TypedDict):
    """The company. New industries or countries are scored (as unseen values), never rejected."""

    account_id: NotRequired[Text]
    name: NotRequired[Text]
    domain: NotRequired[Text]
    industry: NotRequired[Text]
    employees: NotRequired[Annotated[float | None, Field(strict=True, ge=0, multiple_of=1)]]
    annual_revenue: NotRequired[Amount]
    country: NotRequired[Text]
    tech_stack: NotRequired[
        Annotated[
            list[Annotated[str, Field(max_length=128)]] | Annotated[str, Field(max_length=4096)] | None,
            Field(description='A list of tools, or one string separated by ";".'),
        ]
    ]


@with_config(_OPEN)
class EventIn(TypedDict):
    """One engagement event (web, e-mail, webinar, sales activity). Other fields (``event_id``,
    ``properties``, ...) are accepted and ignored."""

    ts: Timestamp
    event_type: Annotated[str, Field(min_length=1, max_length=64)]


@with_config(_OPEN)
class StageChangeIn(TypedDict):
    """One funnel stage change from the CRM (mql, sal, sql, opportunity, closed_won, ...)."""

    stage: Annotated[str, Field(min_length=1, max_length=64)]
    ts: Timestamp
    reason: NotRequired[Text]


@with_config(_STRICT)
class ScoreRequest(TypedDict):
    """One lead as the CRM knows it now. ``as_of`` defaults to the current time (UTC)."""

    lead: LeadIn
    account: NotRequired[AccountIn | None]
    events: NotRequired[list[EventIn]]
    stage_history: NotRequired[list[StageChangeIn]]
    as_of: NotRequired[
        Annotated[
            Timestamp | None,
            Field(
                description="Score as of this time: only events strictly before it count; none may be later."
            ),
        ]
    ]


@with_config(_STRICT)
class BatchRequest(TypedDict):
    """Up to ``LEADSCORE_MAX_BATCH`` leads; ``as_of`` here is the default for leads without their own."""

    leads: Annotated[list[ScoreRequest], Field(min_length=1)]
    as_of: NotRequired[Timestamp | None]


def error_list(exc: ValidationError, prefix: tuple[str | int, ...] = ("body",)) -> list[dict[str, Any]]:
    """pydantic errors as ``{loc, msg, type}`` with ``loc`` after ``prefix``. Inputs are never echoed
    back (they may be large or personal); a timestamp that is not ISO-8601 says so in words."""
    out = []
    for e in exc.errors(include_url=False, include_input=False):
        kind, msg = e["type"], e["msg"]
        if kind == "string_pattern_mismatch" and (e.get("ctx") or {}).get("pattern") == ISO_DATETIME:
            kind, msg = "datetime_format", TIMESTAMP_HELP
        out.append({"loc": [*prefix, *e["loc"]], "msg": msg, "type": kind})
    return out


# ---- responses -------------------------------------------------------------------------------------


class ErrorDetail(BaseModel):
    """One problem with the input: where (``loc``, from ``body``) and what."""

    loc: list[str | int]
    msg: str
    type: str


class ErrorResponse(BaseModel):
    detail: list[ErrorDetail] | str


class ReasonOut(BaseModel):
    feature: str = Field(description="The model feature (stable identifier).")
    text: str = Field(description="The reason in business words.")
    contribution: float = Field(description="SHAP contribution in log-odds of the thresholds target model.")


class Reasons(BaseModel):
    positive: list[ReasonOut]
    negative: list[ReasonOut]


class ScoreResult(BaseModel):
    lead_id: str
    as_of: datetime
    probabilities: dict[str, float] = Field(
        description="Calibrated probability per target, e.g. sql (within 90 days), closed_won (180 days)."
    )
    stage: str | None = Field(description="First stage rule the thresholds target's probability passes.")
    score: int = Field(ge=1, le=99, description="1–99 for people; see docs/api.md for the mapping.")
    reasons: Reasons | None = Field(None, description="Absent when `explain=false`.")
    model_version: str
    bundle_checksum: str


class BatchItemOk(ScoreResult):
    index: int
    status: Literal["ok"] = "ok"


class BatchItemError(BaseModel):
    index: int
    status: Literal["error"] = "error"
    lead_id: str | None
    errors: list[ErrorDetail]


class BatchResponse(BaseModel):
    results: list[BatchItemOk | BatchItemError]
    n_ok: int
    n_failed: int
    model_version: str
    bundle_checksum: str


class ReloadResponse(BaseModel):
    reloaded: bool
    model_version: str | None
    bundle_checksum: str | None
    previous_checksum: str | None = None
    error: str | None = None


# ---- a flat bundle's request (``leadscore train-table``): one row of the export ------------------------

Scalar = Annotated[str, Field(max_length=4096)] | int | float | bool | None


@with_config(ConfigDict(extra="forbid", allow_inf_nan=False))
class FlatRow(TypedDict):
    """One lead as a row of the export: column name → value (the export's headers or normalised names)."""

    lead_id: Annotated[str, Field(min_length=1, max_length=256)]
    attributes: Annotated[
        dict[Annotated[str, Field(max_length=256)], Scalar],
        Field(max_length=2000, examples=[{"Company Size": "51-200", "Lead Source": "Webinar", "Visits": 12}]),
    ]
    as_of: NotRequired[
        Annotated[Timestamp | None, Field(description="Echoed back (a flat row has no history to cut).")]
    ]


@with_config(ConfigDict(extra="forbid", allow_inf_nan=False))
class FlatBatch(TypedDict):
    """Up to ``LEADSCORE_MAX_BATCH`` rows."""

    leads: Annotated[list[FlatRow], Field(min_length=1)]
    as_of: NotRequired[Timestamp | None]


SCORE_ADAPTER: TypeAdapter[ScoreRequest] = TypeAdapter(ScoreRequest)
BATCH_ADAPTER: TypeAdapter[BatchRequest] = TypeAdapter(BatchRequest)


# ---- the example of the OpenAPI docs (and of docs/api.md) -------------------------------------------

EXAMPLE_REQUEST: dict[str, Any] = json.loads((Path(__file__).parent / "example_request.json").read_text())
EXAMPLE_BATCH: dict[str, Any] = {"leads": [EXAMPLE_REQUEST], "as_of": "2025-06-01T00:00:00Z"}
