"""Small hand-made contract tables (as a CSV export would give them: every value a string)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from leadscore.config import Params, load_params
from tests.paths import data_dirs

PARAMS_YAML = Path(__file__).resolve().parents[2] / "params.yaml"
EXPORT_TIME = "2024-06-01T00:00:00"


def _frame(rows: list[dict[str, str | None]]) -> pd.DataFrame:
    return pd.DataFrame(rows, dtype="str")


def good_tables() -> dict[str, pd.DataFrame]:
    """Return a fresh set of valid raw tables: 2 accounts, 3 leads, 5 events, 5 stage rows."""
    lead = {
        "job_title": "CTO",
        "seniority": "c_level",
        "department": "it",
        "country": "DE",
        "lead_source": "webinar",
        "email_domain": "acme.com",
    }
    return {
        "accounts": _frame(
            [
                {
                    "account_id": "A1",
                    "industry": "software",
                    "employees": "120",
                    "annual_revenue": "5000000",
                    "country": "DE",
                },
                # "NA" is Namibia, not a missing value
                {
                    "account_id": "A2",
                    "industry": "fintech",
                    "employees": "",
                    "annual_revenue": "0",
                    "country": "NA",
                },
            ]
        ),
        "leads": _frame(
            [
                {"lead_id": "L1", "account_id": "A1", "created_at": "2024-03-01T10:00:00", **lead},
                {"lead_id": "L2", "account_id": None, "created_at": "2024-03-02T00:00:00", **lead},
                {"lead_id": "007", "account_id": "A2", "created_at": "2024-03-03T00:00:00", **lead},
            ]
        ),
        "events": _frame(
            [
                {"lead_id": "L1", "ts": "2024-03-01T11:00:00", "event_type": "page_view"},
                {"lead_id": "L1", "ts": "2024-03-02T09:30:00", "event_type": "pricing_view"},
                {"lead_id": "L2", "ts": "2024-03-03T00:00:00", "event_type": "email_open"},
                # 12 h before the lead was created: tolerated
                {"lead_id": "007", "ts": "2024-03-02T12:00:00", "event_type": "page_view"},
                {"lead_id": "007", "ts": "2024-03-04T00:00:00", "event_type": "demo_request"},
            ]
        ),
        "stage_history": _frame(
            [
                {"lead_id": "L1", "stage": "mql", "ts": "2024-03-02T00:00:00", "reason": None},
                {"lead_id": "L1", "stage": "sql", "ts": "2024-03-05T00:00:00", "reason": None},
                {"lead_id": "L2", "stage": "mql", "ts": "2024-03-03T00:00:00", "reason": None},
                {"lead_id": "007", "stage": "mql", "ts": "2024-03-04T00:00:00", "reason": None},
                {
                    "lead_id": "007",
                    "stage": "disqualified",
                    "ts": "2024-03-06T00:00:00",
                    "reason": "no_budget",
                },
            ]
        ),
    }


@pytest.fixture
def raw() -> dict[str, pd.DataFrame]:
    return good_tables()


def add_rows(raw: dict[str, pd.DataFrame], table: str, *rows: dict[str, str | None]) -> None:
    """Append rows (missing columns empty) to ``raw[table]`` in place."""
    raw[table] = pd.concat([raw[table], _frame(list(rows))], ignore_index=True)


def write_tables(raw: dict[str, pd.DataFrame], raw_dir: Path, fmt: str) -> None:
    """Write each table as ``raw_dir/{table}.{fmt}`` (``csv`` or ``parquet``)."""
    raw_dir.mkdir(parents=True, exist_ok=True)
    for name, df in raw.items():
        if fmt == "csv":
            df.to_csv(raw_dir / f"{name}.csv", index=False)
        else:
            df.to_parquet(raw_dir / f"{name}.parquet", index=False)


def make_params(tmp_path: Path, **validate: object) -> Params:
    """Return params with every data folder under ``tmp_path`` and the fixed test export time."""
    overrides: dict[str, object] = {
        **data_dirs(tmp_path),
        "validate.export_time": EXPORT_TIME,
    }
    overrides.update({f"validate.{k}": v for k, v in validate.items()})
    return load_params(PARAMS_YAML, overrides=overrides)
