"""The served model: raw waveform in, genre logits out, with the training front-end inside.

Saved models are plain dicts (weights + configs), not pickled modules, so a checkpoint stays
loadable when the code moves and loading never executes arbitrary pickled code.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from genreflow.atomic import atomic_path
from genreflow.config import FeatureParams, TrainParams, from_dict, to_dict
from genreflow.features.frontend import LogMelFrontend
from genreflow.models import build_classifier

MODEL_FORMAT = "genreflow-classifier/1"


class WaveformGenreModel(nn.Module):
    """Raw mono waveform ``(B, samples)`` float32 at the feature sample rate -> logits
    ``(B, n_classes)``: log-mel segments (``LogMelFrontend.segments``, the very call that
    built the training features), classify each, average the segment logits.

    This is exactly the clip-level decision the evaluation makes from the feature store,
    so served predictions match the reported metrics.
    """

    def __init__(
        self,
        frontend: LogMelFrontend,
        classifier: nn.Module,
        feature_params: FeatureParams,
        genres: list[str],
    ) -> None:
        super().__init__()
        self.frontend = frontend
        self.classifier = classifier
        self.sample_rate = feature_params.sample_rate
        self.genres = list(genres)

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        if waveform.dim() == 1:
            waveform = waveform.unsqueeze(0)
        if waveform.dim() != 2:
            raise ValueError(
                f"expected a mono waveform batch (B, samples), got shape {tuple(waveform.shape)}"
            )
        feats = self.frontend.segments(waveform.float())  # (B, S, n_mels, frames)
        b, s = feats.shape[:2]
        logits = self.classifier(feats.reshape(b * s, *feats.shape[2:]))
        return logits.reshape(b, s, -1).mean(dim=1)

    @torch.no_grad()
    def predict_genres(self, waveform: torch.Tensor) -> list[str]:
        """Genre names of a waveform batch (convenience for serving and smoke tests)."""
        return [self.genres[i] for i in self.forward(waveform).argmax(dim=1).tolist()]


def save_model(
    path: Path,
    classifier: nn.Module,
    train_params: TrainParams,
    feature_params: FeatureParams,
    genres: list[str],
    extra: dict[str, Any] | None = None,
) -> None:
    """Atomically write weights plus everything needed to rebuild the classifier."""
    state = {k: v.detach().cpu().clone() for k, v in classifier.state_dict().items()}
    payload = {
        "format": MODEL_FORMAT,
        "state_dict": state,
        "train_params": to_dict(train_params),
        "feature_params": to_dict(feature_params),
        "genres": list(genres),
        "n_mels": feature_params.n_mels,
        "n_frames": feature_params.segment_frames,
        "extra": dict(extra or {}),
    }
    with atomic_path(Path(path)) as tmp:
        torch.save(payload, tmp)


def _read(path: Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: model file not found")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for damaged files
        raise ValueError(f"{path}: not a readable genreflow model ({exc})") from exc
    if not isinstance(payload, dict) or payload.get("format") != MODEL_FORMAT:
        raise ValueError(f"{path}: not a genreflow model file (expected format {MODEL_FORMAT})")
    return payload


def load_classifier(path: Path) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the classifier (eval mode, CPU) and return it with the saved metadata.

    The metadata dict holds ``train_params`` (:class:`TrainParams`), ``feature_params``
    (:class:`FeatureParams`), ``genres`` and ``extra``.
    """
    payload = _read(path)
    train_params = from_dict(TrainParams, payload["train_params"], f"{path}:train_params")
    feature_params = from_dict(FeatureParams, payload["feature_params"], f"{path}:feature_params")
    genres = list(payload["genres"])
    classifier = build_classifier(
        train_params, int(payload["n_mels"]), int(payload["n_frames"]), len(genres)
    )
    try:
        classifier.load_state_dict(payload["state_dict"])
    except RuntimeError as exc:
        raise ValueError(f"{path}: weights do not fit the saved architecture ({exc})") from exc
    classifier.eval()
    meta = {
        "train_params": train_params,
        "feature_params": feature_params,
        "genres": genres,
        "extra": payload.get("extra", {}),
    }
    return classifier, meta


def load_serving_model(path: Path) -> WaveformGenreModel:
    """The waveform-level model (eval mode, CPU) from a :func:`save_model` file."""
    classifier, meta = load_classifier(path)
    model = WaveformGenreModel(
        LogMelFrontend(meta["feature_params"]), classifier, meta["feature_params"], meta["genres"]
    )
    return model.eval()
