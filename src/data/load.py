"""Reading raw contract tables from ``data/raw/``: one Parquet/CSV file or a folder of them per table."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

#: File suffixes a table may come in (``.csv.gz``: pandas infers the compression).
_SUFFIXES = (".parquet", ".csv", ".csv.gz")


def _is_data_file(path: Path) -> bool:
    # Spark/Hive folders hold markers such as _SUCCESS and .crc files next to the parts.
    return path.is_file() and not path.name.startswith((".", "_")) and path.name.endswith(_SUFFIXES)


def _read_file(path: Path) -> pd.DataFrame:
    """Read one Parquet file as typed, or one CSV file with every column as ``str``."""
    if path.name.endswith(".parquet"):
        return pd.read_parquet(path)
    # Strings first: type guessing would turn ids like "007" into 7 and make a bad value in one chunk
    # change a whole column's dtype. Only empty fields are missing ("NA" is Namibia, "null" a name).
    return pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""], engine="pyarrow")


def table_sources(raw_dir: Path, name: str) -> list[Path]:
    """Return the files holding table ``name`` in ``raw_dir`` (sorted), or raise.

    Looks for ``name.parquet``, ``name.csv``, ``name.csv.gz`` and a folder ``name/`` of such files.
    Raises ``FileNotFoundError`` naming every place looked at, ``ValueError`` when more than one exists
    (a stale CSV next to a fresh Parquet file must not be picked silently).
    """
    raw_dir = Path(raw_dir)
    candidates = [raw_dir / f"{name}{s}" for s in _SUFFIXES] + [raw_dir / name]
    found = [p for p in candidates if p.exists()]
    if not found:
        looked = ", ".join(str(p) + ("/" if p.suffix == "" else "") for p in candidates)
        raise FileNotFoundError(f"table {name!r} not found; looked for {looked}")
    if len(found) > 1:
        raise ValueError(f"table {name!r} exists more than once: {[str(p) for p in found]}; keep one")
    source = found[0]
    if source.is_dir():
        files = sorted(p for p in source.iterdir() if _is_data_file(p))
        if not files:
            raise FileNotFoundError(f"table {name!r}: folder {source} holds no {'/'.join(_SUFFIXES)} files")
        return files
    return [source]


def read_table(raw_dir: Path, name: str) -> pd.DataFrame:
    """Read table ``name`` from ``raw_dir`` and return it with a fresh RangeIndex.

    Parquet keeps its types; CSV columns are all ``str`` (missing = empty field). The files of a folder
    are concatenated in name order, so row positions (``source_row`` in the quarantine) are stable.
    """
    frames = [_read_file(p) for p in table_sources(raw_dir, name)]
    df = frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)
    # CRM exports often pad header names; contract names never have surrounding blanks.
    df.columns = [str(c).strip() for c in df.columns]
    return df.reset_index(drop=True)
