"""Predict genres of audio files with a registered model (by default the champion).

The logged model carries the log-mel front-end, so inference is: decode, down-mix and
resample with the pipeline's own :func:`genreflow.audio.load_mono`, then one forward pass.
Heavy imports wait until a prediction is asked for, so the CLI starts quickly.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

CHAMPION_URI = "models:/genre-classifier@champion"


@dataclass(frozen=True)
class Prediction:
    path: str
    genre: str
    probabilities: dict[str, float]  # genre -> softmax probability, best first


def model_metadata(model_uri: str) -> tuple[list[str], int, int]:
    """Genre order, sample rate and segment length from the logged model's metadata."""
    from mlflow.models import get_model_info

    metadata = get_model_info(model_uri).metadata or {}
    if "genres" not in metadata or "sample_rate" not in metadata:
        raise ValueError(f"{model_uri}: model metadata lacks genres/sample_rate")
    segment = int(metadata.get("segment_samples", 0))
    return list(metadata["genres"]), int(metadata["sample_rate"]), segment


def predict_files(paths: Sequence[Path], model_uri: str = CHAMPION_URI) -> list[Prediction]:
    """One :class:`Prediction` per file; an undecodable or empty file raises
    :class:`~genreflow.audio.AudioDecodeError` naming it (from ``load_mono``)."""
    import mlflow
    import torch

    from genreflow.audio import load_mono

    genres, sample_rate, segment_samples = model_metadata(model_uri)
    model = mlflow.pytorch.load_model(model_uri)
    results = []
    for path in paths:
        wave = load_mono(path, sample_rate)
        if wave.numel() < segment_samples:  # the exported graph needs one whole segment
            wave = torch.nn.functional.pad(wave, (0, segment_samples - wave.numel()))
        with torch.inference_mode():
            probs = torch.softmax(model(wave[None]), dim=-1)[0]
        order = torch.argsort(probs, descending=True).tolist()
        results.append(
            Prediction(
                path=str(path),
                genre=genres[order[0]],
                probabilities={genres[i]: round(float(probs[i]), 4) for i in order},
            )
        )
    return results
