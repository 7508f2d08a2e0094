"""Predict genres of audio files with a registered model (by default the champion).

The logged model carries the log-mel front-end, so inference is: decode, down-mix and
resample with the pipeline's own :func:`genreflow.audio.load_mono`, then one forward pass.
:class:`ServedModel` is that path, shared by ``genreflow predict`` and by the registry when it
re-scores a champion on new test clips, so both see exactly what serving sees (padding of
short clips included). Heavy imports wait until a prediction is asked for, so the CLI starts
quickly.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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


@dataclass(frozen=True)
class ServedModel:
    """A logged waveform model with the metadata needed to feed it."""

    uri: str
    model: Any  # waveform (batch, samples) -> logits
    genres: tuple[str, ...]
    sample_rate: int
    segment_samples: int

    @classmethod
    def load(cls, model_uri: str) -> ServedModel:
        import mlflow

        genres, sample_rate, segment_samples = model_metadata(model_uri)
        model = mlflow.pytorch.load_model(model_uri)
        return cls(model_uri, model, tuple(genres), sample_rate, segment_samples)

    def probabilities(self, path: Path | str) -> Any:
        """Softmax over genres for one file; raises AudioDecodeError naming a bad file."""
        import torch

        from genreflow.audio import load_mono

        wave = load_mono(path, self.sample_rate)
        if wave.numel() < self.segment_samples:  # the exported graph needs one whole segment
            wave = torch.nn.functional.pad(wave, (0, self.segment_samples - wave.numel()))
        with torch.inference_mode():
            return torch.softmax(self.model(wave[None]), dim=-1)[0]

    def predict(self, path: Path | str) -> Prediction:
        import torch

        probs = self.probabilities(path)
        order = torch.argsort(probs, descending=True).tolist()
        return Prediction(
            path=str(path),
            genre=self.genres[order[0]],
            probabilities={self.genres[i]: round(float(probs[i]), 4) for i in order},
        )


def predict_files(paths: Sequence[Path], model_uri: str = CHAMPION_URI) -> list[Prediction]:
    """One :class:`Prediction` per file; an undecodable or empty file raises
    :class:`~genreflow.audio.AudioDecodeError` naming it (from ``load_mono``)."""
    served = ServedModel.load(model_uri)
    return [served.predict(path) for path in paths]
