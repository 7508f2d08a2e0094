"""The validated manifest as an MLflow dataset input of each training run.

Why: the run tags already carry the manifest's SHA-256, but MLflow's runs table only fills its
**Dataset** column from ``mlflow.log_input``. Logging the manifest there lets a person see at a
glance which data each run used, and spot two runs trained on different data, without opening
their tags.

The digest is a prefix of the file's SHA-256 (MLflow 3.17 caps dataset digests at 36
characters, so the full 64-character hash does not fit); the full hash rides along as the
input tag ``sha256`` and equals the run tag ``data.validated_manifest_sha256``. The source is
the manifest file the stage actually read.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from genreflow.core.hashing import file_sha256

if TYPE_CHECKING:
    from mlflow.data.pandas_dataset import PandasDataset

DATASET_NAME = "validated-manifest"
CONTEXT = "training"
DIGEST_CHARS = 16  # 64 bits of the SHA-256: short enough for the runs table, still unique
SHA256_TAG = "sha256"


def manifest_digest(sha256: str) -> str:
    """The dataset digest of a manifest whose SHA-256 is ``sha256`` (a prefix of it)."""
    return sha256[:DIGEST_CHARS]


def manifest_dataset(manifest_path: Path) -> tuple[PandasDataset, str]:
    """The manifest as an ``mlflow.data`` pandas dataset, and the file's full SHA-256.

    Read as strings so the schema the UI shows is the file's, not pandas' type guesses. The
    source is built explicitly: MLflow registers two local-file source types and warns when
    asked to guess between them from a bare path.
    """
    import mlflow.data
    from mlflow.data.sources import LocalArtifactDatasetSource

    path = Path(manifest_path).resolve()
    sha = file_sha256(path)
    frame = pd.read_csv(path, dtype=str)
    dataset = mlflow.data.from_pandas(
        frame,
        source=LocalArtifactDatasetSource(str(path)),
        name=DATASET_NAME,
        digest=manifest_digest(sha),
    )
    return dataset, sha


def log_manifest_input(manifest_path: Path) -> str:
    """Log the manifest as the active run's ``training`` dataset input; returns its digest.

    Logging the same manifest again (a resumed run) adds nothing: MLflow keys inputs by
    dataset name and digest.
    """
    import mlflow

    dataset, sha = manifest_dataset(manifest_path)
    mlflow.log_input(dataset, context=CONTEXT, tags={SHA256_TAG: sha})
    return dataset.digest
