"""Typed view of ``params.yaml``: the one place configuration is defined.

Each DVC stage owns one section. Loading goes through :func:`load_params` so a typo in
``params.yaml`` fails loudly (naming the key) instead of silently falling back to a default.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml

from genreflow.errors import GenreflowError

GTZAN_GENRES: tuple[str, ...] = (
    "blues",
    "classical",
    "country",
    "disco",
    "hiphop",
    "jazz",
    "metal",
    "pop",
    "reggae",
    "rock",
)


class ConfigError(GenreflowError, ValueError):
    """Raised when ``params.yaml`` is missing a section or holds an unknown or ill-typed key."""


# --------------------------------------------------------------------------- fetch (``data``)
@dataclass(frozen=True)
class SyntheticParams:
    clips_per_genre: int = 60
    duration_s: float = 12.0
    sample_rate: int = 22050
    seed: int = 20240601
    workers: int = 2


@dataclass(frozen=True)
class LocalParams:
    path: str = ""


@dataclass(frozen=True)
class UrlParams:
    url: str = "http://opihi.cs.uvic.ca/sound/genres.tar.gz"
    sha256: str = "24347e0223d2ba798e0a558c4c172d9d4a19c00bb7963fe055d183dadb4ef2c6"
    retries: int = 5
    timeout_s: float = 60.0
    max_extract_bytes: int = 4_000_000_000


@dataclass(frozen=True)
class DataParams:
    source: Literal["synthetic", "local", "url"] = "synthetic"
    genres: tuple[str, ...] = GTZAN_GENRES
    synthetic: SyntheticParams = field(default_factory=SyntheticParams)
    local: LocalParams = field(default_factory=LocalParams)
    url: UrlParams = field(default_factory=UrlParams)


# --------------------------------------------------------------------------- validate
@dataclass(frozen=True)
class SplitParams:
    scheme: Literal["auto", "gtzan", "stratified"] = "auto"
    val_fraction: float = 0.2
    test_fraction: float = 0.2
    seed: int = 7


@dataclass(frozen=True)
class ValidateParams:
    min_duration_s: float = 3.0
    max_duration_s: float = 40.0
    sample_rates: tuple[int, ...] = (8000, 11025, 16000, 22050, 24000, 32000, 44100, 48000)
    max_channels: int = 2
    min_rms_dbfs: float = -60.0
    max_clipping_ratio: float = 0.01
    class_balance_tolerance: float = 0.5
    max_quarantine_share: float = 0.2
    split: SplitParams = field(default_factory=SplitParams)


# --------------------------------------------------------------------------- spectrogramize
@dataclass(frozen=True)
class FeatureParams:
    sample_rate: int = 22050
    n_fft: int = 2048
    hop_length: int = 512
    n_mels: int = 96
    f_min: float = 0.0
    f_max: float = 11025.0
    segment_s: float = 3.0
    segment_hop_s: float = 1.5
    workers: int = 2

    @property
    def segment_samples(self) -> int:
        return int(round(self.segment_s * self.sample_rate))

    @property
    def segment_hop_samples(self) -> int:
        return int(round(self.segment_hop_s * self.sample_rate))

    @property
    def segment_frames(self) -> int:
        """Frames of one segment's spectrogram (torch.stft with ``center=True``)."""
        return self.segment_samples // self.hop_length + 1


# --------------------------------------------------------------------------- train_cnn / train_lstm
@dataclass(frozen=True)
class AugmentParams:
    freq_masks: int = 0
    freq_mask_width: int = 0
    time_masks: int = 0
    time_mask_width: int = 0
    mixup_alpha: float = 0.0
    random_crop_frames: int = 0  # >0: pad by this many frames, crop back at a random offset


@dataclass(frozen=True)
class TrainParams:
    arch: Literal["cnn", "crnn"] = "cnn"
    epochs: int = 30
    batch_size: int = 64
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 0.0
    lr_schedule: Literal["none", "cosine", "step"] = "none"
    lr_step_epochs: int = 10
    lr_step_gamma: float = 0.5
    early_stopping_patience: int = 0  # 0 disables early stopping
    dropout: float = 0.3
    batch_norm: bool = False
    channels: tuple[int, ...] = (16, 32, 64, 128, 256)
    dense: tuple[int, ...] = (512, 256, 128, 64)
    lstm_hidden: int = 64
    lstm_layers: int = 1
    bidirectional: bool = True
    pooling: Literal["mean", "last"] = "mean"
    augment: AugmentParams = field(default_factory=AugmentParams)
    mixed_precision: bool = True  # bf16 autocast, used only on CUDA
    num_threads: int = 0  # 0 leaves torch's default


# --------------------------------------------------------------------------- evaluate
@dataclass(frozen=True)
class EvaluateParams:
    bootstrap_samples: int = 1000
    bootstrap_seed: int = 0
    promotion_margin: float = 0.0
    promotion_alpha: float = 0.05
    registered_model: str = "genre-classifier"
    experiment: str = "genreflow"


@dataclass(frozen=True)
class Params:
    seed: int = 42
    data: DataParams = field(default_factory=DataParams)
    validate: ValidateParams = field(default_factory=ValidateParams)
    features: FeatureParams = field(default_factory=FeatureParams)
    train_cnn: TrainParams = field(default_factory=TrainParams)
    train_lstm: TrainParams = field(default_factory=lambda: TrainParams(arch="crnn"))
    evaluate: EvaluateParams = field(default_factory=EvaluateParams)


T = TypeVar("T")


def _coerce(value: Any, tp: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return from_dict(tp, value, where)
    if origin is Literal:
        allowed = typing.get_args(tp)
        if value not in allowed:
            raise ConfigError(f"{where}: {value!r} is not one of {list(allowed)}")
        return value
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        (item_tp, *_) = typing.get_args(tp)
        return tuple(_coerce(v, item_tp, f"{where}[{i}]") for i, v in enumerate(value))
    if origin in (typing.Union, types.UnionType):
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true/false, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if tp is str:
        if value is None:
            return ""
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    return value


def from_dict(cls: type[T], raw: dict[str, Any], where: str = "params") -> T:
    """Build dataclass ``cls`` from a mapping, rejecting unknown keys by name."""
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; known keys are {sorted(known)}")
    kwargs = {k: _coerce(v, hints[k], f"{where}.{k}") for k, v in raw.items()}
    return cls(**kwargs)


def to_dict(obj: Any) -> dict[str, Any]:
    """Plain nested dict (lists, not tuples) for logging and JSON."""

    def plain(v: Any) -> Any:
        if isinstance(v, tuple | list):
            return [plain(x) for x in v]
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        return v

    return plain(dataclasses.asdict(obj))


def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``: the shape MLflow params want."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, f"{key}."))
        else:
            out[key] = v
    return out


def load_params(path: str | Path = "params.yaml") -> Params:
    """Read and type-check the whole ``params.yaml``."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: params file not found")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    try:
        return from_dict(Params, raw, where=str(path))
    except TypeError as exc:  # pragma: no cover - defensive
        raise ConfigError(f"{path}: {exc}") from exc
