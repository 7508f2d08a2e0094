"""Clip-level predictions on the feature store: the decision serving makes, per clip.

A clip's logits are the mean of its segments' logits, then argmax. ``evaluate`` scores these
on the validation and test splits; the paired bootstrap needs them in the held-out clips'
order, which :func:`aligned_correctness` gives.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from genreflow.features.store import FeatureStore


def clip_predictions(
    classifier: Any, store: FeatureStore, split: str = "test"
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(track ids, y_true, y_pred)`` per clip of ``split`` from the feature path."""
    from genreflow.training.clip_metrics import clip_labels, clip_logits
    from genreflow.training.loop import predict_segments, select_device

    x, y, ids = store.split(split)
    if len(x) == 0:
        raise ValueError(f"the feature store has no {split} segments; check the validate split")
    seg_logits = predict_segments(classifier, x, device=select_device())
    clip_ids, logits = clip_logits(seg_logits, ids)
    truth_ids, truth = clip_labels(y, ids)
    if not np.array_equal(clip_ids, truth_ids):  # both are first-seen order; guard anyway
        raise AssertionError("clip order of logits and labels differs")
    return clip_ids, truth, logits.argmax(axis=1).astype(np.int64)


def aligned_correctness(
    track_ids: Sequence[str], ids: np.ndarray, y_true: np.ndarray, y_pred: np.ndarray
) -> tuple[bool, ...]:
    """Per-clip correctness in the order of ``track_ids`` (what the paired bootstrap pairs on).

    ``ids``, ``y_true`` and ``y_pred`` are :func:`clip_predictions`' answer, in store order.
    """
    by_id = {str(t): bool(a == b) for t, a, b in zip(ids, y_true, y_pred, strict=True)}
    missing = [t for t in track_ids if t not in by_id]
    if missing:
        raise AssertionError(f"no prediction for test clip(s) {missing[:3]}")
    return tuple(by_id[t] for t in track_ids)
