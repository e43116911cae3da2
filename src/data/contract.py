"""The data contract: the tables leadscore reads from ``data/raw/`` and their vocabularies.

These constants are the single source of truth for table names, columns and allowed values; the pandera
schemas (``leadscore.data.schemas``), the demo generator and the API request models all refer to them.
"""

from __future__ import annotations

from typing import Final

TABLES: Final = ("accounts", "leads", "events", "stage_history")

#: Required columns per table (a missing one fails the load with the table and column named).
REQUIRED_COLUMNS: Final[dict[str, tuple[str, ...]]] = {
    "accounts": ("account_id", "industry", "employees", "annual_revenue", "country"),
    "leads": (
        "lead_id",
        "account_id",
        "created_at",
        "email_domain",
        "job_title",
        "seniority",
        "department",
        "country",
        "lead_source",
    ),
    "events": ("lead_id", "ts", "event_type"),
    "stage_history": ("lead_id", "stage", "ts", "reason"),
}

#: Optional columns that are kept when present (never used as features: see ``NON_FEATURE_COLUMNS``).
OPTIONAL_COLUMNS: Final[dict[str, tuple[str, ...]]] = {
    "accounts": ("name", "tech_stack", "domain"),
    "leads": ("first_name", "last_name", "email"),
    "events": ("event_id", "properties"),
    "stage_history": (),
}

#: Columns that identify a person and must never influence a score (invariance tests check this).
NON_FEATURE_COLUMNS: Final = ("lead_id", "first_name", "last_name", "email", "name", "event_id")

#: Primary keys: a duplicate key is quarantined (first occurrence kept).
PRIMARY_KEYS: Final[dict[str, tuple[str, ...]]] = {
    "accounts": ("account_id",),
    "leads": ("lead_id",),
    "events": ("lead_id", "ts", "event_type"),
    "stage_history": ("lead_id", "stage", "ts"),
}

EVENT_TYPES: Final = (
    "page_view",
    "pricing_view",
    "demo_view",
    "content_download",
    "webinar_register",
    "webinar_attend",
    "email_open",
    "email_click",
    "form_submit",
    "demo_request",
    "trial_signup",
    "meeting_booked",
    "unsubscribe",
)

STAGES: Final = ("mql", "sal", "sql", "opportunity", "closed_won", "closed_lost", "recycled", "disqualified")

#: Forward order of the funnel. Within one cycle (between two ``recycled`` rows) a lead's stages must
#: appear in non-decreasing rank over time; ``recycled`` starts a new cycle, ``disqualified`` may
#: follow any stage.
STAGE_RANK: Final[dict[str, int]] = {
    "mql": 1,
    "sal": 2,
    "sql": 3,
    "opportunity": 4,
    "closed_won": 5,
    "closed_lost": 5,
}

SENIORITIES: Final = ("student", "individual", "manager", "director", "vp", "c_level", "owner")
DEPARTMENTS: Final = (
    "sales",
    "marketing",
    "it",
    "engineering",
    "finance",
    "operations",
    "hr",
    "executive",
    "education",
    "other",
)
LEAD_SOURCES: Final = (
    "organic_search",
    "paid_search",
    "paid_social",
    "webinar",
    "content",
    "referral",
    "event",
    "outbound",
    "partner",
)
DISQUALIFY_REASONS: Final = ("bad_timing", "no_budget", "wrong_title", "not_a_fit", "competitor", "student")
