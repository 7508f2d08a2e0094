"""Clip-level scores with an honest uncertainty estimate.

GTZAN's filtered test split has only 290 clips, so one accuracy figure hides an interval of
roughly +-5 points. Every score therefore carries a percentile-bootstrap 95% interval, which
is what the promotion rule and the report compare against.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.metrics import f1_score, precision_recall_fscore_support

from genreflow.evaluation.bootstrap import resampled_means


@dataclass
class ClipScores:
    """Scores of one classifier on one set of clips."""

    accuracy: float
    accuracy_ci95: tuple[float, float]
    macro_f1: float
    per_class: dict[str, dict[str, float]]  # genre -> precision, recall, f1, support
    n_clips: int

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form, flat at the top so ``dvc metrics diff`` shows each number."""
        return {
            "accuracy": float(self.accuracy),
            "accuracy_ci95_low": float(self.accuracy_ci95[0]),
            "accuracy_ci95_high": float(self.accuracy_ci95[1]),
            "macro_f1": float(self.macro_f1),
            "n_clips": int(self.n_clips),
            "per_class": {g: dict(v) for g, v in self.per_class.items()},
        }


def bootstrap_accuracy_ci(
    correct: np.ndarray, samples: int, seed: int, level: float = 0.95
) -> tuple[float, float]:
    """Percentile-bootstrap interval of the mean of ``correct`` (one 0/1 entry per clip).

    Clips are resampled with replacement ``samples`` times from a generator seeded with
    ``seed``, so the interval is reproducible run to run. Draws are made in blocks so memory
    stays bounded for large test sets.
    """
    if not 0.0 < level < 1.0:
        raise ValueError(f"bootstrap_accuracy_ci: level must be in (0, 1), got {level}")
    means = resampled_means(correct, samples, seed)
    alpha = 1.0 - level
    low, high = np.quantile(means, [alpha / 2.0, 1.0 - alpha / 2.0])
    return float(low), float(high)


def _check_labels(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> None:
    if y_true.ndim != 1 or y_pred.ndim != 1:
        raise ValueError(
            f"score_clips: y_true and y_pred must be 1-D, got shapes {y_true.shape} "
            f"and {y_pred.shape}"
        )
    if y_true.shape != y_pred.shape:
        raise ValueError(
            f"score_clips: y_true has {y_true.size} clips but y_pred has {y_pred.size}"
        )
    if y_true.size == 0:
        raise ValueError("score_clips: no clips to score")
    for name, y in (("y_true", y_true), ("y_pred", y_pred)):
        bad = (y < 0) | (y >= n_classes)
        if bad.any():
            raise ValueError(
                f"score_clips: {name} has label {int(y[bad][0])} outside 0..{n_classes - 1} "
                f"({n_classes} genres)"
            )


def score_clips(
    y_true: np.ndarray,
    y_pred: np.ndarray,
    genres: list[str],
    bootstrap_samples: int = 1000,
    seed: int = 0,
) -> ClipScores:
    """Accuracy (with a bootstrap 95% interval), macro-F1 and per-class scores per clip.

    Every genre appears in ``per_class`` even when a class is absent from the clips (its
    scores are then 0 with support 0), so reports keep a fixed shape. Macro-F1 averages over
    the genres that occur in ``y_true`` or ``y_pred`` (scikit-learn's default): a genre that is
    neither present nor predicted says nothing about the classifier, while one predicted but
    never present still costs its zero F1.
    """
    y_true = np.asarray(y_true)
    y_pred = np.asarray(y_pred)
    n_classes = len(genres)
    _check_labels(y_true, y_pred, n_classes)
    y_true = y_true.astype(np.int64)
    y_pred = y_pred.astype(np.int64)

    correct = y_true == y_pred
    ci = bootstrap_accuracy_ci(correct, bootstrap_samples, seed)

    labels = list(range(n_classes))
    precision, recall, f1, support = precision_recall_fscore_support(
        y_true, y_pred, labels=labels, zero_division=0
    )
    present = sorted(set(np.unique(y_true).tolist()) | set(np.unique(y_pred).tolist()))
    macro_f1 = f1_score(y_true, y_pred, labels=present, average="macro", zero_division=0)
    per_class = {
        genre: {
            "precision": float(precision[k]),
            "recall": float(recall[k]),
            "f1": float(f1[k]),
            "support": int(support[k]),
        }
        for k, genre in enumerate(genres)
    }
    return ClipScores(
        accuracy=float(correct.mean()),
        accuracy_ci95=ci,
        macro_f1=float(macro_f1),
        per_class=per_class,
        n_clips=int(y_true.size),
    )
