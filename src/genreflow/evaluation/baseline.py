"""The classical baseline: per-clip mean/std of log-mel bands + logistic regression.

It gives the CNN and CRNN numbers a floor to be read against (the literature's hand-crafted
baselines sit near 53% on GTZAN's filtered split). It uses the same feature store and the
same train/test split as the networks, aggregated per clip so no clip is split across sets.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from genreflow.features.store import FeatureStore

# lbfgs on ~256 standardised features converges well within this; it only bounds the worst case.
_MAX_ITER = 5000


def clip_mean_std_features(
    features: np.ndarray, track_ids: np.ndarray, chunk_segments: int = 1024
) -> tuple[np.ndarray, np.ndarray]:
    """Per-clip mean and std of every mel band over all frames of the clip's segments.

    ``features`` is ``(n_segments, n_mels, frames)`` (float16 is fine: sums run in float64,
    a chunk of segments at a time, so a full-size store is never copied to float64 at once).
    Returns ``(clip ids in first-seen order, (n_clips, 2 * n_mels) [means | stds])``.
    """
    features = np.asarray(features)
    track_ids = np.asarray(track_ids).astype(str)
    if features.ndim != 3:
        raise ValueError(
            f"clip_mean_std_features: expected (segments, n_mels, frames), got {features.shape}"
        )
    if track_ids.shape != (features.shape[0],):
        raise ValueError(
            f"clip_mean_std_features: {features.shape[0]} segments but {track_ids.size} track ids"
        )
    if features.shape[0] == 0:
        raise ValueError("clip_mean_std_features: no segments")
    codes, uniques = pd.factorize(track_ids, sort=False)
    n_clips, n_mels, frames = len(uniques), features.shape[1], features.shape[2]
    sums = np.zeros((n_clips, n_mels), dtype=np.float64)
    sq_sums = np.zeros((n_clips, n_mels), dtype=np.float64)
    for start in range(0, features.shape[0], chunk_segments):
        x = features[start : start + chunk_segments].astype(np.float64)
        c = codes[start : start + chunk_segments]
        np.add.at(sums, c, x.sum(axis=2))
        np.add.at(sq_sums, c, np.square(x).sum(axis=2))
    counts = np.bincount(codes, minlength=n_clips).astype(np.float64)[:, None] * frames
    mean = sums / counts
    var = np.maximum(sq_sums / counts - np.square(mean), 0.0)
    return np.asarray(uniques, dtype=str), np.concatenate([mean, np.sqrt(var)], axis=1)


def fit_baseline(X_train: np.ndarray, y_train: np.ndarray, seed: int) -> Pipeline:
    """Standardise, then multinomial logistic regression (C=1.0): simple, deterministic."""
    model = Pipeline(
        [
            ("scale", StandardScaler()),
            ("logreg", LogisticRegression(C=1.0, max_iter=_MAX_ITER, random_state=seed)),
        ]
    )
    # One BLAS thread: on small problems threaded OpenBLAS is far slower than serial here.
    with threadpool_limits(1):
        return model.fit(X_train, y_train)


def _clip_labels(ids: np.ndarray, seg_ids: np.ndarray, seg_labels: np.ndarray) -> np.ndarray:
    """One label per clip; a clip whose segments disagree means a corrupt index."""
    frame = pd.DataFrame({"track_id": seg_ids, "label": seg_labels})
    n_labels = frame.groupby("track_id", sort=False)["label"].nunique()
    mixed = n_labels[n_labels > 1]
    if len(mixed):
        raise ValueError(
            f"feature store index.csv: track {mixed.index[0]!r} has segments with different "
            "labels; re-run spectrogramize"
        )
    first = frame.groupby("track_id", sort=False)["label"].first()
    return first.loc[ids].to_numpy().astype(np.int64)


def clip_dataset(store: FeatureStore, split: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(clip ids, mean/std features, labels)`` of one split, one row per clip."""
    seg_features, seg_labels, seg_ids = store.split(split)
    if seg_features.shape[0] == 0:
        raise ValueError(f"feature store index.csv: split {split!r} has no segments")
    ids, X = clip_mean_std_features(seg_features, seg_ids)
    return ids, X, _clip_labels(ids, seg_ids, seg_labels)


def _check_no_leak(store: FeatureStore) -> None:
    n_splits = store.index.groupby("track_id")["split"].nunique()
    leaked = n_splits[n_splits > 1]
    if len(leaked):
        raise ValueError(
            f"feature store index.csv: {len(leaked)} track(s) appear in more than one split "
            f"(e.g. {leaked.index[0]!r}); the split leaks, re-run spectrogramize"
        )


def run_baseline(store: FeatureStore, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Fit on the train split's clips, predict the test split's: ``(ids, y_true, y_pred)``."""
    _check_no_leak(store)
    _, X_train, y_train = clip_dataset(store, "train")
    test_ids, X_test, y_test = clip_dataset(store, "test")
    model = fit_baseline(X_train, y_train, seed)
    return test_ids, y_test, model.predict(X_test).astype(np.int64)
