"""Score a registered version on raw test audio through the same path serving uses."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from genreflow.core.progress import progress_bar


def served_correctness(
    model_uri: str, paths: Sequence[Path], genres: Sequence[str], progress: bool = True
) -> tuple[tuple[bool, ...], list[str]]:
    """Per-clip correctness of the model at ``model_uri`` and notes on clips it failed.

    Goes through :meth:`genreflow.serving.served.ServedModel.analyse` (decode, resample, pad short
    clips, windows, front-end inside the model), so a champion trained on other data is judged
    exactly as it serves. Predictions are compared by genre *name*, so another label order is
    scored right. A clip the model cannot score counts as wrong, and the notes say so.
    """
    from genreflow.serving.served import ServedModel

    served = ServedModel.load(model_uri)
    correct: list[bool] = []
    failed: list[str] = []
    for path, truth in progress_bar(
        list(zip(paths, genres, strict=True)),
        desc="re-score champion",
        unit="clip",
        disable=not progress,
    ):
        try:
            correct.append(served.analyse(path).genre == truth)
        except Exception as exc:  # an exported graph may reject a shape it was not built for
            correct.append(False)
            failed.append(f"{path}: {type(exc).__name__}: {str(exc)[:200]}")
    notes = []
    if failed:
        notes.append(
            f"{model_uri} could not score {len(failed)} clip(s), counted as wrong; "
            f"first: {failed[0]}"
        )
    return tuple(correct), notes
