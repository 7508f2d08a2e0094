"""The served model: raw waveform in, genre logits out, with the training front-end inside.

Saved models are plain dicts (weights + configs), not pickled modules, so a checkpoint stays
loadable when the code moves and loading never executes arbitrary pickled code.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import torch
from torch import nn

from genreflow.core.atomic import atomic_path
from genreflow.core.config import FeatureParams, TrainParams, from_dict, to_dict
from genreflow.features.frontend import LogMelFrontend
from genreflow.models import build_classifier

MODEL_FORMAT = "genreflow-classifier/1"

# The logged serving model (training.export writes it, genreflow.serving.pyfunc reads it): an
# MLflow pyfunc whose artifacts are the exported core and a JSON config of SERVING_FORMAT.
SERVING_FORMAT = "genreflow-serving/1"
CORE_ARTIFACT = "core"  # torch.export archive of SegmentCore
CONFIG_ARTIFACT = "serving"  # serving_config(): genres, rates, segment geometry, dims


class WaveformGenreModel(nn.Module):
    """Raw mono waveform ``(B, samples)`` float32 at the feature sample rate -> logits
    ``(B, n_classes)``: log-mel segments (``LogMelFrontend.segments``, the very call that
    built the training features), classify each, average the segment logits.

    This is exactly the clip-level decision the evaluation makes from the feature store,
    so served predictions match the reported metrics. :meth:`analyse` adds the song vector:
    the classifier's penultimate layer (``classifier.embed``) averaged over the clip's
    segments, then L2-normalised. :meth:`segment_outputs` is the per-segment form that the
    exported core computes, so a long file can be scored window by window and summed.
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

    @property
    def embedding_dim(self) -> int:
        return int(self.classifier.embedding_dim)

    def segment_outputs(self, waveform: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Waveform ``(B, samples)`` -> per-segment logits ``(B, S, n_classes)`` and
        embeddings ``(B, S, embedding_dim)`` (not normalised: sums over windows stay exact)."""
        if waveform.dim() == 1:
            waveform = waveform.unsqueeze(0)
        if waveform.dim() != 2:
            raise ValueError(
                f"expected a mono waveform batch (B, samples), got shape {tuple(waveform.shape)}"
            )
        feats = self.frontend.segments(waveform.float())  # (B, S, n_mels, frames)
        b, s = feats.shape[:2]
        embedding = self.classifier.embed(feats.reshape(b * s, *feats.shape[2:]))
        logits = self.classifier.head(embedding)
        return logits.reshape(b, s, -1), embedding.reshape(b, s, -1)

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        return self.segment_outputs(waveform)[0].mean(dim=1)

    def analyse(self, waveform: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Waveform ``(B, samples)`` -> clip logits ``(B, n_classes)`` and the song vector
        ``(B, embedding_dim)``: segment-averaged penultimate layer, L2-normalised."""
        logits, embedding = self.segment_outputs(waveform)
        return logits.mean(dim=1), l2_normalise(embedding.mean(dim=1))

    @torch.no_grad()
    def predict_genres(self, waveform: torch.Tensor) -> list[str]:
        """Genre names of a waveform batch (convenience for serving and smoke tests)."""
        return [self.genres[i] for i in self.forward(waveform).argmax(dim=1).tolist()]


class SegmentCore(nn.Module):
    """What is exported (``torch.export``) as the served model's core: waveform ``(B, samples)``
    -> ``(segment logits (B, S, C), segment embeddings (B, S, D))``.

    Per-segment outputs rather than clip means, so the serving side can score a long file in
    windows and average over all its segments (:mod:`genreflow.serving.served`).
    """

    def __init__(self, model: WaveformGenreModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, waveform: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.model.segment_outputs(waveform)


def serving_config(model: WaveformGenreModel) -> dict[str, Any]:
    """What the pyfunc needs besides the core: genre order, sample rate, segment geometry
    (to place windows on segment boundaries) and the embedding width."""
    fe = model.frontend
    return {
        "format": SERVING_FORMAT,
        "genres": list(model.genres),
        "sample_rate": int(model.sample_rate),
        "embedding_dim": model.embedding_dim,
        "geometry": {
            "n_fft": int(fe.stft.n_fft),
            "hop_length": int(fe.hop_length),
            "segment_samples": int(fe.segment_samples),
            "segment_frames": int(fe.segment_frames),
            "hop_frames": int(fe.hop_frames),
        },
    }


def l2_normalise(x: torch.Tensor) -> torch.Tensor:
    """Unit L2 norm along the last axis (an all-zero vector stays zero)."""
    return torch.nn.functional.normalize(x, p=2.0, dim=-1)


# --------------------------------------------------------------------------- inference speed
# Measured on a 30-s clip with the default CRNN, one thread (thread CPU time, so other
# processes on the machine do not count): 78 ms as trained, 57 ms with PairMaxPool2d
# (bit-identical), 44 ms with BatchNorm folded too, 42 ms with channels-last conv weights.
# PyTorch's NCHW max-pool kernel on CPU is the slow part: it also writes argmax indices and
# does not vectorise across the 2x2 window (16 ms of the 78 for the first block alone).


class PairMaxPool2d(nn.Module):
    """``nn.MaxPool2d(kernel, ceil_mode=True)`` for kernels of 1 or 2 per axis (stride = kernel,
    no padding), as element-wise maxima of strided slices: the same values bit for bit (a
    maximum does not round), several times faster on CPU, and no argmax indices."""

    def __init__(self, kernel: tuple[int, int]) -> None:
        super().__init__()
        if any(k not in (1, 2) for k in kernel):
            raise ValueError(f"PairMaxPool2d pools by 1 or 2 per axis, got {kernel}")
        self.kernel = tuple(kernel)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        kh, kw = self.kernel
        if kh == 2:
            if x.shape[-2] % 2:  # ceil_mode: the last window holds one row
                x = torch.nn.functional.pad(x, (0, 0, 0, 1), value=float("-inf"))
            x = torch.maximum(x[..., 0::2, :], x[..., 1::2, :])
        if kw == 2:
            if x.shape[-1] % 2:
                x = torch.nn.functional.pad(x, (0, 1), value=float("-inf"))
            x = torch.maximum(x[..., 0::2], x[..., 1::2])
        return x


def _pair_pool(pool: nn.MaxPool2d) -> nn.Module:
    """``pool`` as a :class:`PairMaxPool2d` when it is one of the shapes that covers."""
    kernel = pool.kernel_size if isinstance(pool.kernel_size, tuple) else (pool.kernel_size,) * 2
    stride = pool.stride if isinstance(pool.stride, tuple) else (pool.stride,) * 2
    padding = pool.padding if isinstance(pool.padding, tuple) else (pool.padding,) * 2
    dilation = pool.dilation if isinstance(pool.dilation, tuple) else (pool.dilation,) * 2
    plain = (
        pool.ceil_mode
        and not pool.return_indices
        and tuple(stride) == tuple(kernel)
        and tuple(padding) == (0, 0)
        and tuple(dilation) == (1, 1)
        and all(k in (1, 2) for k in kernel)
    )
    return PairMaxPool2d(tuple(kernel)) if plain else pool


def _fold_and_swap(module: nn.Module) -> None:
    """In place: every ``Conv2d`` followed by an eval ``BatchNorm2d`` inside a Sequential
    becomes one Conv2d (BatchNorm folded into its weights, then an Identity), and every
    plain 2x2/2x1 ``MaxPool2d`` a :class:`PairMaxPool2d`."""
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    for name, child in module.named_children():
        if isinstance(child, nn.MaxPool2d):
            setattr(module, name, _pair_pool(child))
            continue
        if isinstance(child, nn.Sequential):
            for i in range(len(child) - 1):
                conv, norm = child[i], child[i + 1]
                if isinstance(conv, nn.Conv2d) and isinstance(norm, nn.BatchNorm2d):
                    child[i] = fuse_conv_bn_eval(conv, norm)
                    child[i + 1] = nn.Identity()
        _fold_and_swap(child)


def inference_classifier(classifier: nn.Module) -> nn.Module:
    """An eval-mode CPU copy of ``classifier`` made faster for serving, same decisions:
    BatchNorm folded into the convolutions (float rounding moves logits by ~1e-7) and
    max-pools computed as :class:`PairMaxPool2d` (bit-identical). The training module is
    left untouched, and its state dict keeps its keys."""
    import copy

    fast = copy.deepcopy(classifier).to(device="cpu", memory_format=torch.contiguous_format)
    return serving_structure(fast)


def serving_structure(classifier: nn.Module) -> nn.Module:
    """In place: ``classifier`` in eval mode with :func:`inference_classifier`'s structure
    (BatchNorm folded, fast pools): the modules an exported core's weights load into (the fast
    champion rebuilds them so, without copying the freshly initialised classifier first)."""
    classifier.eval()
    _fold_and_swap(classifier)
    return classifier


def channels_last_weights(module: nn.Module) -> nn.Module:
    """In place: 4-D (convolution) weights stored channels-last, so oneDNN convolutions and
    the layers after them run in NHWC without reordering every call. A layout, not a value:
    logits move by float rounding only (~1e-7)."""
    with torch.no_grad():
        for param in module.parameters():
            if param.dim() == 4:
                param.data = param.data.contiguous(memory_format=torch.channels_last)
    return module


def weights_sha256(module: nn.Module) -> str:
    """SHA-256 of ``module``'s state (every tensor's name, dtype, shape and values).

    The content identity of a trained model: the same weights give the same digest whichever
    MLflow run or logged model (random ids) they were saved under, and any other weights give
    another. Values are hashed in logical (contiguous) order, so a memory layout such as
    :func:`channels_last_weights` does not change it.
    """
    digest = hashlib.sha256()
    for name, value in sorted(module.state_dict().items()):
        if not isinstance(value, torch.Tensor):
            continue
        tensor = value.detach().to("cpu").contiguous().reshape(-1)
        digest.update(f"{name}\0{tensor.dtype}\0{tuple(value.shape)}\0".encode())
        digest.update(tensor.view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


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
    # Through a file handle: torch.save names the zip's inner folder after a *path* it is given
    # (here a random temporary name), so the same weights would give other bytes each time.
    with atomic_path(Path(path)) as tmp, tmp.open("wb") as handle:
        torch.save(payload, handle)


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
