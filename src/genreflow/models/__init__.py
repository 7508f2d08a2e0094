"""Genre classifiers over log-mel segments, and the waveform-level serving wrapper."""

from __future__ import annotations

from torch import nn

from genreflow.core.config import ConfigError, TrainParams
from genreflow.models.cnn import PaperCNN
from genreflow.models.crnn import CRNN

__all__ = ["CRNN", "PaperCNN", "build_classifier"]


def build_classifier(params: TrainParams, n_mels: int, n_frames: int, n_classes: int) -> nn.Module:
    """The classifier ``params.arch`` names, sized for ``(n_mels, n_frames)`` segments."""
    if n_mels < 1 or n_frames < 1 or n_classes < 2:
        raise ValueError(
            f"cannot build a classifier for {n_mels} mels x {n_frames} frames and "
            f"{n_classes} classes"
        )
    if params.arch == "cnn":
        return PaperCNN(params, n_mels, n_frames, n_classes)
    if params.arch == "crnn":
        return CRNN(params, n_mels, n_frames, n_classes)
    raise ConfigError(f"unknown arch {params.arch!r}; expected 'cnn' or 'crnn'")
