"""The compact feature store under ``data/features/``.

Layout (written atomically as one directory by ``spectrogramize``):

- ``segments.npy``: float16 ``(n_segments, n_mels, frames)`` log-mel dB, loadable whole into
  memory or onto a GPU;
- ``index.csv``: one row per segment, in the order of ``segments.npy``, with columns
  ``track_id, genre, label, split, segment, path``;
- ``meta.json``: the feature params, the genre list (label order) and the shape.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from genreflow.core.config import FeatureParams, from_dict

SEGMENTS_FILE = "segments.npy"
INDEX_FILE = "index.csv"
META_FILE = "meta.json"
INDEX_COLUMNS = ["track_id", "genre", "label", "split", "segment", "path"]


@dataclass
class FeatureStore:
    features: np.ndarray  # float16 (n_segments, n_mels, frames), possibly memory-mapped
    index: pd.DataFrame
    meta: dict[str, Any]

    @classmethod
    def load(cls, directory: Path | str, mmap: bool = True) -> FeatureStore:
        directory = Path(directory)
        for name in (SEGMENTS_FILE, INDEX_FILE, META_FILE):
            if not (directory / name).is_file():
                raise FileNotFoundError(
                    f"{directory / name}: missing from the feature store; "
                    "run `dvc repro spectrogramize`"
                )
        features = np.load(directory / SEGMENTS_FILE, mmap_mode="r" if mmap else None)
        index = pd.read_csv(directory / INDEX_FILE, dtype={"track_id": str, "split": str})
        meta = json.loads((directory / META_FILE).read_text())
        if len(index) != features.shape[0]:
            raise ValueError(
                f"{directory}: index.csv has {len(index)} rows but segments.npy has "
                f"{features.shape[0]} segments; the store is inconsistent, re-run spectrogramize"
            )
        return cls(features=features, index=index, meta=meta)

    @property
    def genres(self) -> list[str]:
        return list(self.meta["genres"])

    @property
    def feature_params(self) -> FeatureParams:
        return from_dict(FeatureParams, self.meta["features"], "meta.features")

    def split_rows(self, name: str) -> np.ndarray:
        """Store rows (ascending) of one split, reading no segment: a split larger than RAM
        is then read batch by batch from the memory-mapped ``features``."""
        return np.flatnonzero((self.index["split"] == name).to_numpy())

    def row_targets(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Labels (int64) and track ids of ``rows``: the index only, no segment read."""
        return (
            self.index["label"].to_numpy()[rows].astype(np.int64),
            self.index["track_id"].to_numpy()[rows].astype(str),
        )

    def split(self, name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Segments, labels and track ids of one split (``train``, ``val`` or ``test``)."""
        rows = self.split_rows(name)
        return (np.asarray(self.features[rows]), *self.row_targets(rows))
