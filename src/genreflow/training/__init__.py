"""The shared training loop, its checkpoints, augmentations and clip-level metrics."""

from __future__ import annotations

from genreflow.training.clip_metrics import clip_accuracy, clip_labels, clip_logits
from genreflow.training.loop import (
    EpochMetrics,
    TrainResult,
    predict_segments,
    select_device,
    train_classifier,
)

__all__ = [
    "EpochMetrics",
    "TrainResult",
    "clip_accuracy",
    "clip_labels",
    "clip_logits",
    "predict_segments",
    "select_device",
    "train_classifier",
]
