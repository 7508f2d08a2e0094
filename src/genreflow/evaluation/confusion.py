"""Confusion outputs: per-clip rows for DVC plots, the matrix as CSV, and a PNG figure.

The figure follows the source paper's confusion figures: genre names on both axes, actual
genres down the rows, counts in every cell and the shading row-normalised so that classes of
different sizes read alike.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import confusion_matrix

from genreflow.core.atomic import atomic_path, write_json


def _genre_names(labels: np.ndarray, genres: list[str], what: str) -> list[str]:
    labels = np.asarray(labels).astype(np.int64)
    bad = (labels < 0) | (labels >= len(genres))
    if bad.any():
        raise ValueError(
            f"confusion: {what} has label {int(labels[bad][0])} outside 0..{len(genres) - 1}"
        )
    return [genres[k] for k in labels]


def confusion_rows(
    track_ids: np.ndarray, y_true: np.ndarray, y_pred: np.ndarray, genres: list[str]
) -> list[dict[str, str]]:
    """One ``{"track_id", "actual", "predicted"}`` row per clip, for DVC's confusion template."""
    track_ids = np.asarray(track_ids).astype(str)
    if not len(track_ids) == len(y_true) == len(y_pred):
        raise ValueError(
            f"confusion_rows: {len(track_ids)} track ids, {len(y_true)} true labels and "
            f"{len(y_pred)} predictions; they must match one to one"
        )
    actual = _genre_names(y_true, genres, "y_true")
    predicted = _genre_names(y_pred, genres, "y_pred")
    return [
        {"track_id": str(t), "actual": a, "predicted": p}
        for t, a, p in zip(track_ids, actual, predicted, strict=True)
    ]


def write_confusion_json(path: Path, rows: list[dict]) -> None:
    """Atomically write the rows as a JSON list (DVC plots: ``x: actual``, ``y: predicted``)."""
    write_json(Path(path), list(rows))


def confusion_matrix_frame(
    y_true: np.ndarray, y_pred: np.ndarray, genres: list[str]
) -> pd.DataFrame:
    """Counts with actual genres as rows and predicted genres as columns, every genre kept."""
    _genre_names(y_true, genres, "y_true")
    _genre_names(y_pred, genres, "y_pred")
    counts = confusion_matrix(
        np.asarray(y_true, dtype=np.int64),
        np.asarray(y_pred, dtype=np.int64),
        labels=list(range(len(genres))),
    )
    return pd.DataFrame(
        counts,
        index=pd.Index(list(genres), name="actual"),
        columns=pd.Index(list(genres), name="predicted"),
    )


def write_confusion_csv(path: Path, frame: pd.DataFrame) -> None:
    """Atomically write the matrix; read it back with ``pd.read_csv(path, index_col=0)``."""
    with atomic_path(Path(path)) as tmp:
        frame.to_csv(tmp, index_label="actual")


# matplotlib writes a "Software" text chunk (its version) into every PNG; the figure is a DVC
# output, so its bytes should depend on the matrix alone (PNG gets no creation time).
PNG_METADATA: dict[str, str | None] = {"Software": None}


def plot_confusion_png(path: Path, frame: pd.DataFrame, title: str, normalize: bool = True) -> None:
    """Render the matrix to a 150-dpi PNG; the title gets a second line with the accuracy.

    The figure is built with matplotlib's object API on an Agg canvas rather than through
    ``pyplot``, so it never switches the process-wide backend (a caller's notebook or GUI is
    left alone), registers nothing global and needs no explicit close.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    counts = frame.to_numpy(dtype=np.float64)
    if counts.ndim != 2 or counts.shape[0] != counts.shape[1] or counts.size == 0:
        raise ValueError(f"plot_confusion_png: expected a square matrix, got {counts.shape}")
    rows = [str(g) for g in frame.index]
    cols = [str(g) for g in frame.columns]
    total = counts.sum()
    correct = np.trace(counts)
    if normalize:
        row_sums = counts.sum(axis=1, keepdims=True)
        shade = np.divide(counts, row_sums, out=np.zeros_like(counts), where=row_sums > 0)
        vmax, bar_label = 1.0, "fraction of the actual genre's clips"
    else:
        shade = counts
        vmax, bar_label = max(float(counts.max()), 1.0), "clips"

    n = len(rows)
    side = max(5.0, 0.6 * n + 2.5)
    fig = Figure(figsize=(side + 1.2, side), dpi=150)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    image = ax.imshow(shade, cmap="Blues", vmin=0.0, vmax=vmax, interpolation="nearest")
    bar = fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    bar.set_label(bar_label)

    ax.set_xticks(range(len(cols)), labels=cols, rotation=45, ha="right", rotation_mode="anchor")
    ax.set_yticks(range(n), labels=rows)
    ax.set_xlabel("predicted genre")
    ax.set_ylabel("actual genre")
    font = max(6.0, min(10.0, 90.0 / n))
    for i in range(n):
        for j in range(len(cols)):
            value = counts[i, j]
            if value == 0:
                continue
            color = "white" if shade[i, j] > 0.55 * vmax else "black"
            ax.text(j, i, f"{int(value)}", ha="center", va="center", color=color, fontsize=font)
    accuracy = correct / total if total else float("nan")
    ax.set_title(f"{title}\naccuracy {accuracy:.1%} ({int(correct)}/{int(total)} clips)")
    fig.tight_layout()
    with atomic_path(Path(path)) as tmp:  # a DVC output: no tool version in its bytes
        fig.savefig(tmp, format="png", dpi=150, metadata=PNG_METADATA)
