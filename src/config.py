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
    raw_dir: Path = Path("data/raw")
    interim_dir: Path = Path("data/interim")
    processed_dir: Path = Path("data/processed")
    build_dir: Path = Path("build")
    models_dir: Path = Path("models")
    reports_dir: Path = Path("reports")


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
    num_threads: int = Field(2, ge=1)
    cat_smooth: float = 10
    max_cat_to_onehot: int = 8
    monotone_intent: bool = True  # engagement never lowers, staleness never raises a score
    refit_full: bool = True  # after early stopping, refit on the whole training slice with that many rounds


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
    closed_column: str
    status_column: str
    won_values: tuple[str, ...]
    lost_values: tuple[str, ...]
    open_values: tuple[str, ...] = ()  # other statuses are quarantined (unmapped), never dropped silently
    created_stage: str = "opportunity"  # the stage a lead reaches when its deal is created


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


class MappingParams(_Section):
    """How a CRM export in ``data.raw_dir`` becomes the contract tables (see docs/byod.md)."""

    date_format: str | None = None  # null: ISO 8601, else each value parsed on its own (mixed formats)
    dayfirst: bool = False  # 03/04/2024 is 3 April (only when date_format is null)
    timezone: str = "UTC"  # IANA zone of timestamps without an offset
    missing_values: tuple[str, ...] = ("N/A", "#N/A", "-", "--", "Select", "null", "None")
    tables: dict[MappedTable, tuple[Source, ...]]

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
    """Evidence thresholds of the leakage guard (``leadscore.models.leakage``)."""

    auc_threshold: float = Field(0.95, gt=0.5, le=1)  # one column alone predicts the outcome this well
    missing_high: float = Field(0.95, gt=0, le=1)  # missing in >= this share of one class ...
    missing_low: float = Field(0.05, ge=0, lt=1)  # ... and in <= this share of the other
    min_class_rows: int = Field(10, ge=1)  # statistical checks need this many rows of each class
    value_min_share: float = Field(0.01, ge=0, le=1)  # follow-up values must cover this share of rows
    name_patterns: tuple[str, ...] = (
        r"(^|_)(closed?|won|lost|opportunit(y|ies)|opp|deals?|contracts?|renewals?|churn(ed)?)(_|$)",
        r"(^|_)(stage|status|reason|amount|converted|owner|quote|proposal|negotiation|forecast)(_|$)",
        r"sales_owner|meeting_held|demo_(completed|held|done)|sales_activit|last_contacted|days_to_close",
    )
    value_patterns: tuple[str, ...] = (
        r"\b(closed|won|lost|converted|churned)\b",
        r"\b(opportunity|deal|contract|renewal|proposal|negotiation)\b",
        r"\b(meeting|demo|call) (held|completed|done)\b",
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


class FlatParams(_Section):
    """``leadscore train-table``: cleaning a one-row-per-lead export (``leadscore.data.flat``)."""

    positive_values: tuple[str, ...] = ()  # outcome values meaning converted; empty: 1/yes/true/y
    negative_values: tuple[str, ...] = ()  # empty: every other value is negative (with positive_values)
    date_column: str | None = None  # time-ordered split on this column; null: stratified (optimistic)
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
    allow_columns: tuple[str, ...] = ()  # columns the leakage guard flags but you know are honest
    leakage: LeakageParams = LeakageParams()
    split: FlatSplitParams = FlatSplitParams()


class Params(_Section):
    """The whole of ``params.yaml``. Sections not yet used by a stage may be absent."""

    model_config = ConfigDict(extra="allow", frozen=True)

    data: DataParams = DataParams()
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
