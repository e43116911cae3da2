"""Typed params loaded from ``params.yaml``.

Every stage receives the section it needs as a frozen pydantic model, so a typo in ``params.yaml``
fails at load time with the offending key instead of deep inside a stage. No side effects at import.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, field_validator, model_validator


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DataParams(_Section):
    """Where each stage reads and writes. ``raw_dir`` is the user's: no stage ever writes there."""

    raw_dir: Path = Path("data/raw")  # the user's CRM export (immutable; never a stage output)
    demo_dir: Path = Path("data/demo")  # the demo generator's output (a DVC output of `generate`)
    source: Path = Path("data/demo")  # the folder the pipeline reads: demo_dir, raw_dir or another export
    interim_dir: Path = Path("data/interim")
    processed_dir: Path = Path("data/processed")
    build_dir: Path = Path("build")
    models_dir: Path = Path("models")
    reports_dir: Path = Path("reports")

    @model_validator(mode="after")
    def _demo_never_overwrites_user_data(self) -> DataParams:
        # The generator writes demo_dir; if it were raw_dir (or held it), `dvc repro` would replace or
        # delete the user's export (issue 11).
        demo, raw = self.demo_dir.resolve(), self.raw_dir.resolve()
        if demo == raw or raw.is_relative_to(demo) or demo.is_relative_to(raw):
            raise ValueError(
                f"data.demo_dir ({self.demo_dir}) must be outside data.raw_dir ({self.raw_dir}): the demo "
                "generator writes demo_dir and must never touch the user's export"
            )
        return self


class SparkParams(_Section):
    """A SparkSession for ``engine.backend: pyspark`` (local mode by default, or a cluster's master URL)."""

    master: str = "local[*]"  # local[N] on one machine; spark://host:7077, yarn, k8s://... on a cluster
    app_name: str = "leadscore"
    conf: dict[str, str] = {}  # any spark.* setting, e.g. spark.executor.memory: 8g


class EngineParams(_Section):
    """Where the data stages (validate, snapshots, features) run: one Ibis backend for all three.

    ``LEADSCORE_ENGINE`` in the environment overrides ``backend`` (e.g. ``LEADSCORE_ENGINE=pyspark``).
    """

    backend: str = "duckdb"  # duckdb (embedded) | pyspark | another Ibis backend (snowflake, bigquery, ...)
    threads: int | None = Field(None, ge=1)  # DuckDB threads; null: the CPUs this process may use
    memory_limit: str | None = None  # DuckDB memory limit ("6GB"); past it DuckDB spills to temp_dir
    temp_dir: Path | None = None  # DuckDB spill folder; null: <data.build_dir>/engine-tmp
    batch_rows: int = Field(250_000, ge=1000)  # rows per Arrow batch streamed back to Python
    spark: SparkParams = SparkParams()
    connect: dict[str, Any] = {}  # keyword arguments of ibis.<backend>.connect for other backends


class FunnelRates(_Section):
    mql_to_sql: float = Field(0.19, gt=0, lt=1)
    sql_to_won: float = Field(0.27, gt=0, lt=1)
    sql_to_opportunity: float = Field(0.75, gt=0, le=1)


class DriftParams(_Section):
    enabled: bool = False
    date: str = "2025-09-01"
    webinar_effect: float = 0.3
    pricing_effect: float = 1.6


class GenerateParams(_Section):
    seed: int = 42
    n_leads: int = Field(40000, ge=100)
    accounts_per_lead: float = Field(0.45, gt=0, le=1)
    start: str = "2024-01-01"
    months: int = Field(30, ge=6)
    seasonality: float = Field(0.25, ge=0, lt=1)
    mql_points: int = 60
    rates: FunnelRates = FunnelRates()
    drift: DriftParams = DriftParams()
    #: The export is taken this many months after ``start`` (null: at the end of ``months``). The world is
    #: always simulated over ``months``, so a later export of the same seed ("the next export") shows the
    #: same past plus what happened since: raise this to get N more months of the same leads.
    export_months: int | None = Field(None, ge=6)

    @model_validator(mode="after")
    def _export_within_world(self) -> GenerateParams:
        if self.export_months is not None and self.export_months > self.months:
            raise ValueError(
                f"generate.export_months ({self.export_months}) is after the simulated span "
                f"(generate.months = {self.months}); raise generate.months"
            )
        return self


class ValidateParams(_Section):
    max_reject_share: float = Field(0.05, ge=0, le=1)
    future_tolerance_hours: float = Field(24, ge=0)
    export_time: str | None = None


class TargetParams(_Section):
    stage: str
    horizon_days: int = Field(gt=0)
    past_stages: tuple[str, ...]


class SplitParams(_Section):
    train: float = Field(0.6, gt=0)
    calibration: float = Field(0.2, gt=0)
    test: float = Field(0.2, gt=0)
    purge_horizon: bool = True
    validation_share: float = Field(0.15, gt=0, lt=0.5)

    @model_validator(mode="after")
    def _sum_to_one(self) -> SplitParams:
        total = self.train + self.calibration + self.test
        if abs(total - 1.0) > 1e-6:
            raise ValueError(f"split fractions must sum to 1, got {total:.3f}")
        return self


class SnapshotParams(_Section):
    every_days: int = Field(30, gt=0)
    warmup_days: int = Field(60, ge=0)
    max_lead_age_days: int = Field(365, gt=0)
    targets: dict[str, TargetParams]
    split: SplitParams = SplitParams()


class FeatureParams(_Section):
    event_types: tuple[str, ...]
    windows_days: tuple[int, ...]
    count_types: tuple[str, ...]
    recency_types: tuple[str, ...]
    web_types: tuple[str, ...]
    active_day_windows: tuple[int, ...]
    decay_half_life_days: float = Field(gt=0)
    decay_weights: dict[str, float]
    size_bands: tuple[int, ...]
    sweet_spot: tuple[int, int]
    personal_domains: tuple[str, ...]
    competitor_domains: tuple[str, ...]
    target_industries: tuple[str, ...]

    @model_validator(mode="after")
    def _types_known(self) -> FeatureParams:
        known = set(self.event_types)
        for name in ("count_types", "recency_types", "web_types"):
            unknown = set(getattr(self, name)) - known
            if unknown:
                raise ValueError(f"features.{name} lists event types not in event_types: {sorted(unknown)}")
        unknown = set(self.decay_weights) - known
        if unknown:
            raise ValueError(f"features.decay_weights has unknown event types: {sorted(unknown)}")
        if list(self.size_bands) != sorted(self.size_bands):
            raise ValueError("features.size_bands must be increasing")
        return self


class BaselinePoints(_Section):
    size_sweet_spot: float = 15
    senior_title: float = 20
    pricing_view: float = 20
    content_download: float = 15
    webinar_attend: float = 20
    demo_view: float = 25
    email_opens_3plus: float = 10
    personal_email: float = -10
    student: float = -25
    competitor: float = -50


class BaselineParams(_Section):
    mql_points: float = 60
    window_days: int = 90
    points: BaselinePoints = BaselinePoints()
    senior_levels: tuple[str, ...] = ("manager", "director", "vp", "c_level")


class TrainParams(_Section):
    seed: int = 7
    objective: Literal["binary"] = "binary"
    learning_rate: float = Field(0.03, gt=0, le=1)
    num_leaves: int = Field(4, ge=2)
    max_depth: int = 2
    min_child_samples: int = Field(50, ge=1)
    feature_fraction: float = Field(0.6, gt=0, le=1)
    bagging_fraction: float = Field(0.8, gt=0, le=1)
    bagging_freq: int = Field(1, ge=0)
    lambda_l2: float = Field(1.0, ge=0)
    n_estimators: int = Field(1000, ge=1)
    early_stopping_rounds: int = Field(50, ge=1)
    num_threads: int | None = Field(None, ge=1)  # null: the CPUs this process may use (see runtime)
    cat_smooth: float = 10
    max_cat_to_onehot: int = 8
    monotone_intent: bool = True  # engagement never lowers, staleness never raises a score
    refit_full: bool = True  # after early stopping, refit on the whole training slice with that many rounds
    # < 1: keep this share of the training slice's negatives (all positives; calibration and test whole).
    # For example tables larger than memory: the calibrator, fitted on the whole calibration slice,
    # brings the probabilities back to the real base rate (docs/scale.md).
    negative_sample_rate: float = Field(1.0, gt=0, le=1)
    # at most this many of the training slice's negatives (sampled as above); null: no cap
    max_negatives: int | None = Field(1_000_000, ge=1)
    # lead / account attributes the leakage guard flags but you know are filled in before the outcome
    allow_columns: tuple[str, ...] = ()


class CalibrateParams(_Section):
    method: Literal["auto", "sigmoid", "isotonic"] = "auto"
    isotonic_min_rows: int = 20000
    isotonic_min_positives: int = 1000


class EvaluateParams(_Section):
    ece_bins: int = Field(10, ge=2)
    top_fractions: tuple[float, ...] = (0.1, 0.2)
    segments: tuple[str, ...] = ("lead_source", "industry", "size_band")
    min_segment_rows: int = 200


class StageGoal(_Section):
    capacity_per_week: float | None = Field(None, gt=0)
    target_conversion: float | None = Field(None, gt=0, lt=1)
    min_precision: float | None = Field(None, gt=0, lt=1)

    @model_validator(mode="after")
    def _exactly_one(self) -> StageGoal:
        set_ = [k for k, v in self.model_dump().items() if v is not None]
        if len(set_) != 1:
            raise ValueError(
                "a stage goal takes exactly one of capacity_per_week, target_conversion, min_precision;"
                f" got {set_ or 'none'}"
            )
        return self


class StageRule(_Section):
    name: str
    probability: float | None = Field(None, ge=0, le=1)
    goal: StageGoal | None = None

    @model_validator(mode="after")
    def _one_of(self) -> StageRule:
        if (self.probability is None) == (self.goal is None):
            raise ValueError(f"stage {self.name!r} needs exactly one of `probability` or `goal`")
        return self


class ThresholdParams(_Section):
    target: str = "sql"
    stages: tuple[StageRule, ...]
    grid_points: int = Field(200, ge=10)

    @field_validator("stages")
    @classmethod
    def _names_unique(cls, v: tuple[StageRule, ...]) -> tuple[StageRule, ...]:
        names = [s.name for s in v]
        if len(set(names)) != len(names):
            raise ValueError(f"stage names must be unique: {names}")
        if not v:
            raise ValueError("at least one stage rule is required")
        return v


class ExplainParams(_Section):
    max_rows: int = Field(20000, ge=100)
    top_features: int = Field(12, ge=1)
    reasons_per_lead: int = Field(3, ge=1)


class PublishParams(_Section):
    experiment: str = "leadscore"
    registered_model: str = "lead-propensity"



# --- the retraining loop (issue 12): compare, promotion gate, backtest, drift ---------------------------


class CompareGate(_Section):
    """When a challenger may replace the champion (reports/compare.json ``decision``)."""

    #: keep when the upper end of the challenger − champion ROC-AUC interval is below −max_auc_drop
    #: (the challenger is worse beyond the interval)
    max_auc_drop: float = Field(0.0, ge=0, le=1)
    #: keep when the challenger's ECE on the slice is above this
    max_ece: float = Field(0.05, gt=0, le=1)
    #: keep when the lower end of the challenger − champion log-loss interval is above this (worse)
    max_log_loss_increase: float = Field(0.0, ge=0)


class CompareParams(_Section):
    #: the model to beat: a registry reference (models:/<name>@<alias>) or a bundle folder;
    #: null: models:/<publish.registered_model>@champion
    champion: str | None = None
    target: str | None = None  # gate target; null: thresholds.target
    bootstrap: int = Field(300, ge=20, le=20000)
    confidence: float = Field(0.95, gt=0.5, lt=1)
    seed: int = 11
    #: leads sales can call a week; null: the capacity goal in thresholds.stages (else top 10 %)
    capacity_per_week: float | None = Field(None, gt=0)
    gate: CompareGate = CompareGate()


class RetrainRule(_Section):
    """``retrain_recommended`` in reports/drift.json when any of these is passed."""

    score_psi: float = Field(0.2, gt=0)  # PSI of the champion's score, training window → newest window
    feature_psi: float = Field(0.25, gt=0)  # a feature counts as drifted above this PSI ...
    max_drifted_features: int = Field(3, ge=0)  # ... and more than this many drifted features trigger
    expected_auc_drop: float = Field(0.05, gt=0)  # label-free expected ROC-AUC below the test AUC by this
    calibration_ratio: tuple[float, float] = (0.8, 1.25)  # backtest realized / expected outside this band


class MonitorParams(_Section):
    """Backtest and drift of the champion on the newest export (``leadscore monitor``)."""

    backtest_lag_days: int | None = Field(None, ge=0)  # cohorts scored this long ago; null: the horizon
    max_rows: int = Field(30000, ge=100)  # rows per window (sampled deterministically by lead)
    psi_bins: int = Field(10, ge=2, le=100)
    retrain: RetrainRule = RetrainRule()

# --- bring your own data: column mappings (issue 6) ----------------------------------------------------

#: Contract tables a mapping can fill (``leadscore.data.contract.TABLES``).
MappedTable = Literal["accounts", "leads", "events", "stage_history"]


class _Source(_Section):
    """One source file of a contract table. Date options default to the mapping's."""

    file: str  # a table name in data.raw_dir: `Lead` reads Lead.csv / Lead.parquet / Lead/ (suffix optional)
    date_format: str | None = None  # strftime ("%m/%d/%Y %I:%M %p"); "auto": per value; null: the mapping's
    dayfirst: bool | None = None
    timezone: str | None = None  # IANA zone of timestamps without an offset; null: the mapping's


class LookupParams(_Section):
    """Replace ``column``'s values by a lookup in another file (e.g. opportunity id -> lead id)."""

    column: str  # the column of this source holding the key
    file: str  # the file to look the key up in
    key: str  # the column of ``file`` that matches ``column``
    value: str  # the column of ``file`` whose value replaces it


class RowsSource(_Source):
    """A file whose rows become rows of the table: renamed columns, mapped values, constants."""

    kind: Literal["rows"] = "rows"
    columns: dict[str, str | tuple[str, ...]]  # source column -> contract column (or several)
    values: dict[str, dict[str, str | None]] = {}  # contract column -> {source value: contract value | null}
    constants: dict[str, str | float | None] = {}  # contract column -> the same value on every row
    where: dict[str, tuple[str, ...]] = {}  # keep only rows whose source column holds one of these values
    explode: dict[str, str] = {}  # source column -> separator: one row per listed value ("1;2;3")
    lookup: LookupParams | None = None
    deduplicate: bool = False  # keep the first of rows identical after mapping (accounts from a leads file)


class LifecycleSource(_Source):
    """One row per contact with a date column per stage reached -> one stage row per filled date."""

    kind: Literal["lifecycle"]
    id_column: str  # the contact / lead id
    stages: dict[str, str]  # date column -> contract stage
    reason_column: str | None = None  # e.g. a disqualification reason, put on the disqualified row


class DealsSource(_Source):
    """Deals / opportunities keyed by lead id -> opportunity at creation, closed_won/lost at close.

    Only these four columns are ever read: deal attributes (amount, owner, deal stage, ...) exist only
    once a deal exists, so they never reach the leads table (point in time, by construction).
    """

    kind: Literal["deals"]
    lead_id_column: str
    created_column: str
    closed_column: str | None = None  # null: the created date (a table of closed deals with one date)
    status_column: str | None = None  # null only with all_won: a table of won deals has no status
    won_values: tuple[str, ...] = ()
    lost_values: tuple[str, ...] = ()
    open_values: tuple[str, ...] = ()  # other statuses are quarantined (unmapped), never dropped silently
    created_stage: str = "opportunity"  # the stage a lead reaches when its deal is created
    all_won: bool = False  # every row is a closed-won deal (e.g. an orders / customers export)

    @model_validator(mode="after")
    def _status_or_all_won(self) -> DealsSource:
        if self.all_won:
            return self
        if self.status_column is None:
            raise ValueError(
                f"deals source {self.file!r}: no status_column; set `all_won: true` when every row is a "
                "closed-won deal, else name the status column and its won_values / lost_values"
            )
        if not self.won_values:
            raise ValueError(f"deals source {self.file!r}: won_values is empty (which statuses are wins?)")
        return self


def _source_kind(value: Any) -> str:
    if isinstance(value, dict):
        return str(value.get("kind", "rows"))
    return str(getattr(value, "kind", "rows"))


Source = Annotated[
    Annotated[RowsSource, Tag("rows")]
    | Annotated[LifecycleSource, Tag("lifecycle")]
    | Annotated[DealsSource, Tag("deals")],
    Discriminator(_source_kind),
]


WritebackField = Literal["score", "probability", "stage", "reasons", "model_version"]


class WritebackParams(_Section):
    """Scores back into the CRM under its own field names (``leadscore score --crm FILE``)."""

    id: str  # the CRM's record id field (the lead id the mapping read, e.g. Salesforce `Id`)
    fields: dict[WritebackField, str]  # what we write -> the CRM's field (e.g. score: Lead_Score__c)
    target: str | None = None  # whose probability goes in `probability` (null: the stages' target)


class MappingParams(_Section):
    """How a CRM export in ``data.source`` becomes the contract tables (see docs/byod.md)."""

    date_format: str | None = None  # null: ISO 8601, else each value parsed on its own (mixed formats)
    dayfirst: bool = False  # 03/04/2024 is 3 April (only when date_format is null)
    timezone: str = "UTC"  # IANA zone of timestamps without an offset
    missing_values: tuple[str, ...] = ("N/A", "#N/A", "-", "--", "Select", "null", "None")
    tables: dict[MappedTable, tuple[Source, ...]] = {}
    writeback: WritebackParams | None = None  # scores back under the CRM's field names (docs/byod.md)

    @model_validator(mode="after")
    def _kinds_fit_tables(self) -> MappingParams:
        for table, sources in self.tables.items():
            for i, src in enumerate(sources):
                if src.kind != "rows" and table != "stage_history":
                    raise ValueError(
                        f"mapping.tables.{table}[{i}]: kind {src.kind!r} only fills stage_history"
                    )
        return self


# --- bring your own data: flat exports and the leakage guard (issue 6) ----------------------------------


class LeakageParams(_Section):
    """Evidence thresholds of the leakage guard (``leadscore.models.leakage``).

    Real post-outcome columns score 0.65-0.85 on their own, so the bars are low on purpose: a flagged
    honest column costs a little accuracy (and ``--allow`` brings it back); a missed leak makes the
    whole model useless on new leads.
    """

    # (a) one column alone predicts the outcome this well, whatever the other columns do
    auc_threshold: float = Field(0.9, gt=0.5, le=1)
    # (a') ... or about as well as all other unflagged columns together: AUC alone >= AUC of the rest
    # minus ``rest_margin`` (checked for columns with an AUC alone of at least ``rest_min_auc``; columns
    # with an AUC alone of at least ``suspect_auc`` never count in another column's rest)
    rest_min_auc: float = Field(0.62, gt=0.5, le=1)
    suspect_auc: float = Field(0.7, gt=0.5, le=1)
    rest_margin: float = Field(0.01, ge=0, le=0.5)
    # (b) filled in one class ``missing_ratio`` times as often as in the other, and in at least
    # ``missing_min_share`` of that class (e.g. filled for 15 % of won deals, never for lost ones)
    missing_ratio: float = Field(5.0, gt=1)
    missing_min_share: float = Field(0.05, gt=0, lt=1)
    # (d) one value covers this share of rows and occurs in one outcome class only (binomial tail below
    # ``one_sided_alpha`` under the base rate: a rare honest value is not enough)
    one_sided_min_share: float = Field(0.005, ge=0, le=1)
    one_sided_alpha: float = Field(1e-6, gt=0, lt=1)
    # also values found among non-converters only: off by default, because honest disqualifiers
    # (students, competitors, personal e-mail) never convert either
    one_sided_negative: bool = False
    min_class_rows: int = Field(10, ge=1)  # statistical checks need this many rows of each class
    value_min_share: float = Field(0.01, ge=0, le=1)  # follow-up values must cover this share of rows
    # (c) names and values that describe sales follow-up, grading or outcomes (normalised snake_case names)
    name_patterns: tuple[str, ...] = (
        r"(^|_)(closed?|won|lost|opportunit(y|ies)|opp|deals?|contracts?|renewals?|churn(ed)?)(_|$)",
        r"(^|_)(stage|status|reason|amount|converted|conversion|owner|quote|proposal|negotiation)(_|$)",
        r"(^|_)(forecast|quality|rating|grade|graded|tags?|disposition|outcome|result|qualified)(_|$)",
        r"last_(notable_)?activit|last_contact|last_touch|last_call|activity_(date|type)|sales_activit",
        r"(^|_)(call|talk|meeting|conversation)_?(duration|length|time|minutes|seconds|count)",
        r"^duration$|sales_owner|meeting_held|demo_(completed|held|done)|days_to_close|follow_?up",
        r"(^|_)(assigned|assignee|rep|sdr|bdr|ae)(_|$)",
    )
    value_patterns: tuple[str, ...] = (
        r"\b(closed|won|lost|converted|churned|disqualified|unqualified)\b",
        r"\b(opportunity|deal|contract|renewal|proposal|negotiation)\b",
        r"\b(meeting|demo|call) (held|completed|done|booked)\b",
        r"\b(ringing|revert|call ?back|follow[- ]?up|contacted|unreachable|no answer|voicemail)\b",
        r"\b(not interested|wrong number|switched off|junk lead|phone conversation|already a student)\b",
    )


class FlatSplitParams(_Section):
    """Fractions of the flat export (by date when there is a date column): train < calibration < test."""

    train: float = Field(0.6, gt=0)
    calibration: float = Field(0.2, gt=0)
    test: float = Field(0.2, gt=0)
    validation_share: float = Field(0.15, gt=0, lt=0.5)  # last share of train, for early stopping

    @model_validator(mode="after")
    def _sum_to_one(self) -> FlatSplitParams:
        total = self.train + self.calibration + self.test
        if abs(total - 1.0) > 1e-6:
            raise ValueError(f"flat.split fractions must sum to 1, got {total:.3f}")
        return self


class FlatStageRule(_Section):
    """A stage of a flat bundle: the top ``top_share`` of the calibration slice, or a fixed probability."""

    name: str
    top_share: float | None = Field(None, gt=0, le=1)
    probability: float | None = Field(None, ge=0, le=1)

    @model_validator(mode="after")
    def _one_of(self) -> FlatStageRule:
        if (self.top_share is None) == (self.probability is None):
            raise ValueError(f"flat stage {self.name!r} needs exactly one of `top_share` or `probability`")
        return self


class FlatParams(_Section):
    """``leadscore train-table``: cleaning a one-row-per-lead export (``leadscore.data.flat``)."""

    positive_values: tuple[str, ...] = ()  # outcome values meaning converted; empty: 1/yes/true/y
    negative_values: tuple[str, ...] = ()  # empty: every other value is negative (with positive_values)
    date_column: str | None = None  # time-ordered split on this column; null: stratified (optimistic)
    rows_in_time_order: bool = False  # no date column, but rows are in time order: split by position
    dayfirst: bool = False
    id_columns: tuple[str, ...] = ()  # always dropped (besides columns detected as ids)
    drop_columns: tuple[str, ...] = ()  # dropped on request
    placeholders: tuple[str, ...] = (
        "",
        "-",
        "--",
        "?",
        "n/a",
        "#n/a",
        "nan",
        "null",
        "none",
        "select",
        "unknown",
        "not provided",
    )
    high_cardinality_share: float = Field(0.5, gt=0, le=1)  # more distinct values per row: free text, dropped
    max_categories: int = Field(30, ge=1)  # keep the most frequent categories, the rest become "other"
    min_category_rows: int = Field(5, ge=1)  # rarer categories become "other"
    numeric_share: float = Field(0.9, gt=0, le=1)  # a text column is a number when this share parses
    date_share: float = Field(0.9, gt=0, le=1)  # ... a date when this share parses as a date
    max_reject_share: float = Field(0.2, ge=0, le=1)  # fail when more rows than this are quarantined
    allow_columns: tuple[str, ...] = ()  # columns a heuristic drops or the leakage guard flags, kept anyway
    leakage: LeakageParams = LeakageParams()
    split: FlatSplitParams = FlatSplitParams()
    # ordered stage rules of the flat bundle, fitted on the calibration slice (never on test)
    stages: tuple[FlatStageRule, ...] = (
        FlatStageRule(name="sales_ready", top_share=0.1),
        FlatStageRule(name="mql", top_share=0.3),
        FlatStageRule(name="nurture", probability=0.0),
    )


class Params(_Section):
    """The whole of ``params.yaml``. Sections not yet used by a stage may be absent."""

    model_config = ConfigDict(extra="allow", frozen=True)

    data: DataParams = DataParams()
    engine: EngineParams = EngineParams()
    generate: GenerateParams = GenerateParams()
    validate_: ValidateParams = Field(ValidateParams(), alias="validate")
    snapshots: SnapshotParams
    features: FeatureParams
    baseline: BaselineParams = BaselineParams()
    train: TrainParams = TrainParams()
    calibrate: CalibrateParams = CalibrateParams()
    evaluate: EvaluateParams = EvaluateParams()
    thresholds: ThresholdParams
    explain: ExplainParams = ExplainParams()
    publish: PublishParams = PublishParams()
    mapping: MappingParams | None = None  # null: data/raw already follows the contract
    flat: FlatParams = FlatParams()
    compare: CompareParams = CompareParams()
    monitor: MonitorParams = MonitorParams()

    @model_validator(mode="after")
    def _cross_checks(self) -> Params:
        if self.thresholds.target not in self.snapshots.targets:
            raise ValueError(
                f"thresholds.target {self.thresholds.target!r} is not one of snapshots.targets "
                f"{sorted(self.snapshots.targets)}"
            )
        return self


class TableParams(BaseModel):
    """What ``leadscore train-table`` reads: model, calibration, evaluation and flat-export settings.

    Every field has a default, so a flat export trains from any folder without a params.yaml; a params
    file (the project's, or a small one with only these sections) overrides them. Other sections of
    the file are ignored here."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    train: TrainParams = TrainParams()
    calibrate: CalibrateParams = CalibrateParams()
    evaluate: EvaluateParams = EvaluateParams()
    flat: FlatParams = FlatParams()


def load_table_params(path: str | Path | None = None, flat: dict[str, Any] | None = None) -> TableParams:
    """``train-table`` settings: defaults, then ``path`` (if given), then ``flat`` (command-line flags)."""
    raw: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"params file not found: {path.resolve()}")
        raw = yaml.safe_load(path.read_text()) or {}
    raw = {k: raw[k] for k in TableParams.model_fields if k in raw}
    if flat:
        base = dict(raw.get("flat") or {})
        for key in ("drop_columns", "allow_columns"):  # lists from the file and the flags add up
            if key in flat and base.get(key):
                flat = {**flat, key: [*base[key], *flat[key]]}
        raw["flat"] = {**base, **flat}
    return TableParams.model_validate(raw)


def load_params(path: str | Path = "params.yaml", overrides: dict[str, Any] | None = None) -> Params:
    """Read ``params.yaml`` (plus optional dotted-key overrides) and return validated params."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"params file not found: {path.resolve()}")
    raw = yaml.safe_load(path.read_text()) or {}
    for dotted, value in (overrides or {}).items():
        node = raw
        *parents, leaf = dotted.split(".")
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = value
    return Params.model_validate(raw)
