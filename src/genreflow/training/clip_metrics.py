"""Clip-level decisions from segment logits.

A clip is classified by the mean of its segments' logits. Model selection and evaluation
both use this, because a genre label belongs to a whole track, not to a 3-s excerpt.
"""

from __future__ import annotations

import numpy as np


def clip_logits(segment_logits: np.ndarray, track_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(unique track ids in first-seen order, mean logits per track)``."""
    segment_logits = np.asarray(segment_logits)
    track_ids = np.asarray(track_ids)
    if segment_logits.ndim != 2 or len(segment_logits) != len(track_ids):
        raise ValueError(
            f"expected (n_segments, n_classes) logits and n_segments track ids, got "
            f"{segment_logits.shape} and {track_ids.shape}"
        )
    uniq, first, inverse = np.unique(track_ids, return_index=True, return_inverse=True)
    order = np.argsort(first, kind="stable")  # np.unique sorts; restore first-seen order
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    group = rank[inverse.reshape(-1)]
    sums = np.zeros((len(uniq), segment_logits.shape[1]), dtype=np.float64)
    np.add.at(sums, group, segment_logits.astype(np.float64))
    counts = np.bincount(group, minlength=len(uniq)).astype(np.float64)
    return uniq[order], (sums / counts[:, None]).astype(np.float32)


def clip_labels(labels: np.ndarray, track_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(unique track ids in first-seen order, label per track)``; mixed labels raise."""
    labels = np.asarray(labels)
    track_ids = np.asarray(track_ids)
    uniq, first, inverse = np.unique(track_ids, return_index=True, return_inverse=True)
    per_track = labels[first]
    inconsistent = labels != per_track[inverse.reshape(-1)]
    if inconsistent.any():
        bad = track_ids[np.flatnonzero(inconsistent)[0]]
        raise ValueError(f"track {bad!r} has segments with different labels")
    order = np.argsort(first, kind="stable")
    return uniq[order], per_track[order]


def clip_accuracy(segment_logits: np.ndarray, labels: np.ndarray, track_ids: np.ndarray) -> float:
    """Share of clips whose mean segment logits pick the clip's label."""
    _, logits = clip_logits(segment_logits, track_ids)
    _, truth = clip_labels(labels, track_ids)
    return float((logits.argmax(axis=1) == truth).mean())
