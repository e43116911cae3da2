"""Test helper: every data folder of params under one temporary root."""

from __future__ import annotations

from pathlib import Path

from leadscore.config import DataParams


def data_dirs(root: Path) -> dict[str, str]:
    """Dotted param overrides ``data.<x>_dir`` → ``root/<x>`` for every folder in ``DataParams``."""
    dirs = {f"data.{name}": str(Path(root) / name.removesuffix("_dir")) for name in DataParams.model_fields}
    # Tests put their tables where a user would (raw_dir) and the pipeline reads them from there.
    dirs["data.source"] = dirs["data.raw_dir"]
    return dirs
