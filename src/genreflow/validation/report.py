"""Writers for the validate stage's outputs; each file is written atomically.

``reports/validation/`` is written whether the stage passes or not (it is what the user reads to
fix the data); the validated manifest only on success, because downstream stages trust it.
Where each file lives is :class:`genreflow.core.paths.Layout`'s business (``validation_*``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from genreflow.core.atomic import atomic_dir, atomic_path, write_json
from genreflow.validation.expectations import json_safe

QUARANTINE_COLUMNS = ("path", "genre", "track_id", "reason", "status")
VALIDATED_COLUMNS = (
    "path",
    "genre",
    "track_id",
    "split",
    "duration_s",
    "sample_rate",
    "channels",
    "frames",
    "bytes",
    "sha256",
    "audio_sha256",
)
_INT_COLUMNS = (
    "sample_rate",
    "channels",
    "frames",
    "nonfinite_samples",
    "nan_samples",
    "file_bytes",
    "bytes",
)


def write_csv(path: Path, df: pd.DataFrame) -> None:
    with atomic_path(path) as tmp:
        df.to_csv(tmp, index=False)


def _with_int_columns(df: pd.DataFrame) -> pd.DataFrame:
    """Integers stay integers in CSV even where a failed decode left a gap (nullable Int64)."""
    df = df.copy()
    for col in _INT_COLUMNS:
        if col in df.columns:
            df[col] = pd.to_numeric(df[col], errors="coerce").round().astype("Int64")
    return df


def write_clip_table(path: Path, clips: pd.DataFrame) -> None:
    """The full per-clip table with each row's verdict: the evidence behind every decision."""
    write_csv(path, _with_int_columns(clips))


def write_quarantine(path: Path, clips: pd.DataFrame) -> None:
    """Every file not passed on (quarantined or excluded by the split), with its reasons."""
    rows = clips[clips["status"] != "accepted"]
    write_csv(path, rows[list(QUARANTINE_COLUMNS)].sort_values("path", kind="stable"))


def write_validated_manifest(path: Path, clips: pd.DataFrame) -> None:
    accepted = clips[clips["status"] == "accepted"].sort_values("path", kind="stable")
    write_csv(path, _with_int_columns(accepted[list(VALIDATED_COLUMNS)]))


def write_gx_results(path: Path, results: dict[str, Any]) -> None:
    """GX results as strict JSON (``-inf`` RMS of a silent clip becomes the string "-inf")."""
    payload = json_safe({name: res.to_json_dict() for name, res in results.items()})
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(payload, indent=2, allow_nan=False) + "\n")


def write_data_docs(directory: Path, build: Any) -> None:
    """Build Data Docs into a temporary directory and swap it in: no half-written site."""
    with atomic_dir(directory) as tmp:
        build(tmp)


def write_summary(path: Path, summary: dict[str, Any]) -> None:
    write_json(path, json_safe(summary))
