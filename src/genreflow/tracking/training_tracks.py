"""Which tracks a model trained and was selected on, logged with its run.

A champion may only be re-scored on a new test split when none of those test tracks were in
its training or validation data; otherwise the comparison flatters it. Each training run
therefore logs its train and validation tracks, each as ``(track id, audio content hash)``,
as an artifact, and the registry reads it back for the champion before any re-score.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pandas as pd

ARTIFACT_DIR = "split"
FILE_NAME = "train_val_tracks.csv"
COLUMNS = ("track_id", "audio_sha256", "split")
TRAINING_SPLITS = ("train", "val")


def training_tracks(manifest: pd.DataFrame) -> pd.DataFrame:
    """The train and validation rows of a validated manifest, as the logged table."""
    missing = [c for c in COLUMNS if c not in manifest.columns]
    if missing:
        raise ValueError(f"validated manifest lacks column(s) {missing}; re-run validate")
    rows = manifest[manifest["split"].isin(TRAINING_SPLITS)]
    return rows[list(COLUMNS)].sort_values("track_id", kind="stable").reset_index(drop=True)


def log_training_tracks(manifest_path: Path) -> None:
    """Log the train/val track table of ``manifest_path`` to the active MLflow run."""
    import mlflow

    table = training_tracks(pd.read_csv(manifest_path, dtype=str))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / FILE_NAME
        table.to_csv(path, index=False)
        mlflow.log_artifact(str(path), artifact_path=ARTIFACT_DIR)


def load_training_tracks(run_id: str) -> list[tuple[str, str]] | None:
    """``(track id, audio hash)`` pairs a run trained or validated on; ``None`` if not logged."""
    import mlflow
    from mlflow.exceptions import MlflowException

    with tempfile.TemporaryDirectory() as tmp:
        try:
            local = mlflow.artifacts.download_artifacts(
                run_id=run_id, artifact_path=f"{ARTIFACT_DIR}/{FILE_NAME}", dst_path=tmp
            )
        except (MlflowException, OSError):
            return None
        table = pd.read_csv(local, dtype=str).fillna("")
    return list(zip(table["track_id"], table["audio_sha256"], strict=True))
