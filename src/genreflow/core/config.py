"""Typed view of ``params.yaml``: the one place configuration is defined.

Each DVC stage owns one section. ``params.yaml`` is the single source of every value:
:func:`load_params` requires every key (a deleted key fails, naming it, instead of silently
falling back to a default), rejects unknown keys, and then runs :func:`validate_params`, so a
value outside its range fails before any stage work starts instead of being clamped somewhere
deep in the pipeline. The dataclass defaults exist only so tests can build params in code;
they equal ``params.yaml`` (``tests/code/test_params_file.py`` fails when they drift apart).

Range checks are declared next to the field they guard (``ranged(default, "> 0")``); checks
involving several keys are the ``RULES`` table beside the dataclasses, run by
:mod:`genreflow.core.checks`.
Constructing a dataclass checks nothing.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml

from genreflow.core.checks import Rule, find_problems, ranged
from genreflow.core.errors import GenreflowError

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
    """Raised when ``params.yaml`` misses a key, or holds an unknown, ill-typed or bad value."""


# --------------------------------------------------------------------------- fetch (``data``)
@dataclass(frozen=True)
class SyntheticParams:
    clips_per_genre: int = ranged(60, ">= 1")
    duration_s: float = ranged(12.0, "> 0")
    sample_rate: int = ranged(22050, ">= 1")
    seed: int = ranged(20240601, ">= 0")  # numpy's SeedSequence rejects negative seeds


@dataclass(frozen=True)
class LocalParams:
    # A dependency of the fetch stage (``${data.local.path}`` in dvc.yaml), so it must name a
    # path that exists even when unused: data/local is a folder kept in git.
    path: str = "data/local"


@dataclass(frozen=True)
class UrlParams:
    url: str = "http://opihi.cs.uvic.ca/sound/genres.tar.gz"
    sha256: str = "24347e0223d2ba798e0a558c4c172d9d4a19c00bb7963fe055d183dadb4ef2c6"
    retries: int = ranged(5, ">= 0")  # 0: one attempt, no retry
    timeout_s: float = ranged(60.0, "> 0")
    max_extract_bytes: int = ranged(4_000_000_000, ">= 1")


@dataclass(frozen=True)
class FmaParams:
    """The Free Music Archive (``data.source: fma``): ``path`` holds ``fma_metadata/`` and
    ``fma_<subset>/`` (or their zips); labels are ``('track', 'genre_top')`` and the split
    the dataset's own ``('set', 'split')``. Like ``data.local.path``, a dependency of fetch,
    so the default is a folder kept in git."""

    path: str = "data/fma"
    subset: Literal["small", "medium", "large", "full"] = "small"


@dataclass(frozen=True)
class DataParams:
    source: Literal["synthetic", "local", "url", "fma"] = "synthetic"
    genres: tuple[str, ...] = GTZAN_GENRES
    synthetic: SyntheticParams = field(default_factory=SyntheticParams)
    local: LocalParams = field(default_factory=LocalParams)
    url: UrlParams = field(default_factory=UrlParams)
    fma: FmaParams = field(default_factory=FmaParams)


# --------------------------------------------------------------------------- validate
@dataclass(frozen=True)
class SplitParams:
    scheme: Literal["auto", "gtzan", "stratified"] = "auto"
    val_fraction: float = ranged(0.2, "[0, 1)")
    test_fraction: float = ranged(0.2, "[0, 1)")
    seed: int = ranged(7, ">= 0")


@dataclass(frozen=True)
class ValidateParams:
    min_duration_s: float = ranged(3.0, "> 0")
    # An upper bound against runaway files (a day-long recording, a wrong header), not a clip
    # length: full-length tracks are accepted, and spectrogramize takes features.excerpt from
    # them. Files over it are judged from their header, without decoding.
    max_duration_s: float = ranged(3600.0, "> 0")
    sample_rates: tuple[int, ...] = ranged(
        (8000, 11025, 16000, 22050, 24000, 32000, 44100, 48000), ">= 1"
    )
    max_channels: int = ranged(2, ">= 1")
    min_rms_dbfs: float = ranged(-60.0, "<= 0")  # above 0 dBFS every clip would be "silent"
    max_clipping_ratio: float = ranged(0.01, "[0, 1]")
    class_balance_tolerance: float = ranged(0.5, "[0, 1]")
    max_quarantine_share: float = ranged(0.2, "[0, 1]")
    split: SplitParams = field(default_factory=SplitParams)


# --------------------------------------------------------------------------- spectrogramize
@dataclass(frozen=True)
class ExcerptParams:
    """Which parts of a long track become segments (see :mod:`genreflow.features.excerpts`).

    A track longer than ``count * length_s`` contributes ``count`` excerpts of ``length_s``,
    taken ``spread`` evenly over it (one centred in each of ``count`` equal parts), from the
    ``start``, or around the ``middle`` (back to back). A shorter track is used whole: its
    excerpts would overlap it anyway, and 12-s synthetic or 30-s GTZAN clips keep their
    features exactly. Excerpts are a pure function of the track's length, never random.
    """

    length_s: float = ranged(30.0, "> 0")
    count: int = ranged(3, ">= 1")
    position: Literal["spread", "start", "middle"] = "spread"


@dataclass(frozen=True)
class FeatureParams:
    sample_rate: int = ranged(22050, ">= 1")
    n_fft: int = ranged(2048, ">= 1")
    hop_length: int = ranged(512, ">= 1")
    n_mels: int = ranged(96, ">= 1")
    f_min: float = ranged(0.0, ">= 0")
    f_max: float = ranged(11025.0, "> 0")
    segment_s: float = ranged(3.0, "> 0")
    segment_hop_s: float = ranged(1.5, "> 0")
    # Loudness normalisation inside the front-end (training and serving alike):
    # "segment_peak" subtracts each segment's peak dB and floors at -top_db, so a gain
    # change does not move the features; "none" keeps absolute dB (the model before issue 9).
    loudness: Literal["none", "segment_peak"] = "segment_peak"
    top_db: float = ranged(80.0, "> 0")
    excerpt: ExcerptParams = field(default_factory=ExcerptParams)

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
    freq_masks: int = ranged(1, ">= 0")
    freq_mask_width: int = ranged(8, ">= 0")
    time_masks: int = ranged(1, ">= 0")
    time_mask_width: int = ranged(16, ">= 0")
    mixup_alpha: float = ranged(0.0, ">= 0")  # 0 disables mixup
    random_crop_frames: int = ranged(8, ">= 0")  # >0: pad by this many frames, crop back
    # What real recordings change (see training.augment): a random smooth EQ of up to
    # +-eq_db, a chance of band-limiting (the top mel bands lost, as from a 16 kHz source),
    # and a chance of a noise floor at most noise_db below the segment's peak.
    eq_db: float = ranged(6.0, ">= 0")  # 0 disables EQ
    band_limit_prob: float = ranged(0.25, "[0, 1]")
    noise_prob: float = ranged(0.25, "[0, 1]")
    noise_db: float = ranged(-40.0, "< 0")


@dataclass(frozen=True)
class TrainParams:
    """Defaults are ``params.yaml``'s ``train_cnn``; see :func:`train_lstm_defaults`."""

    arch: Literal["cnn", "crnn"] = "cnn"
    epochs: int = ranged(20, ">= 1")
    batch_size: int = ranged(32, ">= 1")
    lr: float = ranged(0.01, "> 0")
    momentum: float = ranged(0.9, "[0, 1)")
    weight_decay: float = ranged(0.0, ">= 0")
    lr_schedule: Literal["none", "cosine", "step"] = "cosine"
    lr_step_epochs: int = ranged(10, ">= 1")
    lr_step_gamma: float = ranged(0.5, "(0, 1]")
    early_stopping_patience: int = ranged(0, ">= 0")  # 0 disables early stopping
    dropout: float = ranged(0.3, "[0, 1)")
    batch_norm: bool = False
    channels: tuple[int, ...] = ranged((16, 32, 64, 128, 256), ">= 1")
    dense: tuple[int, ...] = ranged((512, 256, 128, 64), ">= 1")
    lstm_hidden: int = ranged(64, ">= 1")
    lstm_layers: int = ranged(1, ">= 1")
    bidirectional: bool = True
    pooling: Literal["mean", "last"] = "mean"
    augment: AugmentParams = field(default_factory=AugmentParams)
    mixed_precision: bool = True  # bf16 autocast, used only on CUDA


def train_lstm_defaults() -> TrainParams:
    """``params.yaml``'s ``train_lstm``: where the CNN-LSTM differs from the CNN defaults."""
    return TrainParams(arch="crnn", lr=0.02, batch_norm=True, channels=(16, 32, 64, 64), dense=())


# The one statement of which training section (and DVC stage of the same name) trains which
# arch. Each section owns models/<arch>/ and its MLflow run, so the pairing is fixed: the
# `arch` key in params.yaml must repeat it (checked by `arch_rules` below), and the CLI,
# evaluate and the messages that name a stage all read it from here.
TrainSection = Literal["train_cnn", "train_lstm"]
TRAIN_SECTIONS: tuple[TrainSection, ...] = ("train_cnn", "train_lstm")
SECTION_ARCH: types.MappingProxyType[str, str] = types.MappingProxyType(
    {"train_cnn": "cnn", "train_lstm": "crnn"}
)


def arch_of_section(section: str) -> str:
    """The arch that training section ``section`` trains (``train_lstm`` -> ``crnn``)."""
    if section not in SECTION_ARCH:
        raise ConfigError(f"unknown training section {section!r}; expected one of {TRAIN_SECTIONS}")
    return SECTION_ARCH[section]


def section_of_arch(arch: str) -> TrainSection:
    """The training section (and DVC stage) that trains ``arch`` (``crnn`` -> ``train_lstm``).

    Also takes a section's own suffix (``lstm``), the word people use for the CNN-LSTM.
    """
    for section in TRAIN_SECTIONS:
        if arch in (SECTION_ARCH[section], section.removeprefix("train_")):
            return section
    raise ConfigError(f"unknown model {arch!r}; choose {' or '.join(SECTION_ARCH.values())}")


# --------------------------------------------------------------------------- evaluate
AudioFormat = Literal["wav", "flac", "ogg", "mp3"]


@dataclass(frozen=True)
class RobustnessParams:
    """The changes real audio brings, under which ``evaluate`` re-scores the test clips (each
    written as a real file and read back through the served model; see genreflow.robustness).
    An empty list (or ``stereo: false``) leaves that kind out."""

    # > 0 dB clips at full scale; below -90 dB a 16-bit file is all but digital silence
    gains_db: tuple[float, ...] = ranged((-30.0, -20.0, -10.0, 6.0), "[-90, 40]")
    sample_rates: tuple[int, ...] = ranged((16000, 44100, 48000), ">= 1")  # resampled, written
    formats: tuple[AudioFormat, ...] = ("wav", "flac", "ogg", "mp3")
    noise_db: float = ranged(-40.0, "< 0")  # white noise RMS, dB re full scale
    stereo: bool = True  # the clip as two slightly different channels
    # 0: every test clip; N: a deterministic sample of N when the test split is larger (the
    # default keeps every clip of GTZAN's and the default profile's test splits)
    max_clips: int = ranged(500, ">= 0")


@dataclass(frozen=True)
class SearchParams:
    """Similar-song search (:mod:`genreflow.similarity`), built by evaluate with the champion."""

    k: int = ranged(5, ">= 1")  # neighbours `genreflow similar` shows; the precision@k cutoff
    # auto: exact up to a catalogue size measured by bench/bench_ann.py, approximate above
    # it (genreflow.similarity.ann.choose_index_type); resolved at build time, and meta.json
    # records the type built. flat: exact cosine; hnsw, ivf: approximate
    index: Literal["auto", "flat", "hnsw", "ivf"] = "auto"
    hnsw_m: int = ranged(32, ">= 2")  # HNSW graph degree (index: hnsw, or auto choosing it)


@dataclass(frozen=True)
class EvaluateParams:
    bootstrap_samples: int = ranged(1000, ">= 100")  # fewer gives no usable interval
    bootstrap_seed: int = ranged(0, ">= 0")
    promotion_margin: float = ranged(0.0, "[0, 1)")
    promotion_alpha: float = ranged(0.05, "(0, 0.5)")  # the gate's bound is one-sided 1 - alpha
    robustness: RobustnessParams = field(default_factory=RobustnessParams)
    search: SearchParams = field(default_factory=SearchParams)


# --------------------------------------------------------------------------- tracking
@dataclass(frozen=True)
class TrackingParams:
    """Where runs and models are recorded: read by training (the experiment its runs land in),
    evaluate (the registered model it promotes) and the commands that use the champion.
    Every stage that reads it lists it in ``dvc.yaml``."""

    experiment: str = "genreflow"
    registered_model: str = "genre-classifier"


# --------------------------------------------------------------------------- runtime (no stage)
@dataclass(frozen=True)
class RuntimeParams:
    """How fast, never what: no stage lists this section in ``dvc.yaml``, so changing it
    re-runs nothing. Every output is byte-identical for any worker count; each training run
    records the section as tags. ``pin_numerics: false`` trades cross-machine bit-identity for
    speed (see :mod:`genreflow.core.numerics`); the thread count is the recipe's ``threads``."""

    workers: int = ranged(2, ">= 1")  # processes / threads for fetch, validate, spectrogramize
    pin_numerics: bool = True  # same bytes on any x86-64 with AVX2; false: fastest paths
    # A training split larger than this is read batch by batch from the memory-mapped store
    # (prefetched) instead of resident on the device; the weights are the same bytes.
    memory_budget_gb: float = ranged(4.0, "> 0")


@dataclass(frozen=True)
class Params:
    seed: int = ranged(42, ">= 0")
    threads: int = ranged(2, ">= 1")  # torch intra-op threads: part of the recipe (numerics)
    # DDP ranks a training stage runs as (it launches itself under torchrun when > 1). Part of
    # the recipe, not runtime: float sums split over another number of ranks round differently.
    world_size: int = ranged(1, ">= 1")
    data: DataParams = field(default_factory=DataParams)
    validate: ValidateParams = field(default_factory=ValidateParams)
    features: FeatureParams = field(default_factory=FeatureParams)
    train_cnn: TrainParams = field(default_factory=TrainParams)
    train_lstm: TrainParams = field(default_factory=train_lstm_defaults)
    evaluate: EvaluateParams = field(default_factory=EvaluateParams)
    tracking: TrackingParams = field(default_factory=TrackingParams)
    runtime: RuntimeParams = field(default_factory=RuntimeParams)


# --------------------------------------------------------------------------- cross-key rules
def _distinct_names(names: tuple[str, ...]) -> bool:
    return len(names) > 0 and len(set(names)) == len(names) and all(names)


def _hop_s(p: Params) -> float:
    return p.features.hop_length / p.features.sample_rate


# Checks a field's range cannot express; each names the other keys it reads (see Rule).
RULES: tuple[Rule, ...] = (
    Rule(
        "data.genres",
        (),
        lambda p: _distinct_names(p.data.genres),
        lambda p: "a non-empty list of distinct, non-empty names",
    ),
    Rule(
        "features.hop_length",
        ("features.n_fft",),
        lambda p: p.features.hop_length <= p.features.n_fft,
        lambda p: f"<= features.n_fft ({p.features.n_fft}), or frames skip audio",
    ),
    Rule(
        "features.f_min",
        ("features.f_max",),
        lambda p: p.features.f_min < p.features.f_max,
        lambda p: f"< features.f_max ({p.features.f_max:g})",
    ),
    Rule(
        "features.f_max",
        ("features.sample_rate",),
        lambda p: p.features.f_max <= p.features.sample_rate / 2,
        lambda p: f"<= features.sample_rate / 2 ({p.features.sample_rate / 2:g}, Nyquist)",
    ),
    Rule(  # else the front-end silently rounds the hop up to one frame
        "features.segment_hop_s",
        ("features.hop_length", "features.sample_rate"),
        lambda p: p.features.segment_hop_samples >= p.features.hop_length,
        lambda p: f">= one STFT hop, hop_length / sample_rate ({_hop_s(p):.4g} s)",
    ),
    Rule(  # else each excerpt is padded up to one segment
        "features.excerpt.length_s",
        ("features.segment_s",),
        lambda p: p.features.excerpt.length_s >= p.features.segment_s,
        lambda p: f">= features.segment_s ({p.features.segment_s:g}), one whole segment",
    ),
    Rule(
        "validate.min_duration_s",
        ("features.segment_s",),
        lambda p: p.validate.min_duration_s >= p.features.segment_s,
        lambda p: f">= features.segment_s ({p.features.segment_s:g}), one whole segment",
    ),
    Rule(
        "validate.max_duration_s",
        ("validate.min_duration_s",),
        lambda p: p.validate.max_duration_s > p.validate.min_duration_s,
        lambda p: f"> validate.min_duration_s ({p.validate.min_duration_s:g})",
    ),
    Rule(
        "validate.split.test_fraction",
        ("validate.split.val_fraction",),
        lambda p: p.validate.split.val_fraction + p.validate.split.test_fraction < 1,
        lambda p: f"< 1 - val_fraction ({1 - p.validate.split.val_fraction:g}), or no train split",
    ),
)


def _arch_rule(section: str, arch: str, others: str) -> Rule:
    return Rule(
        f"{section}.arch",
        (),
        lambda p: getattr(p, section).arch == arch,
        lambda p: f"{arch!r} ({others}; each writes models/<arch>/)",
    )


def arch_rules() -> tuple[Rule, ...]:
    """``<section>.arch`` must be the arch :data:`SECTION_ARCH` pairs it with: each section
    owns models/<arch>/ and its MLflow run id, so a shared arch clobbers both."""
    return tuple(
        _arch_rule(
            section,
            arch,
            "; ".join(f"{s} trains {a!r}" for s, a in SECTION_ARCH.items() if s != section),
        )
        for section, arch in SECTION_ARCH.items()
    )


# --------------------------------------------------------------------------- checking and loading
def validate_params(params: Params) -> None:
    """Raise one :class:`ConfigError` listing every bad value (a line each), or return.

    :func:`load_params` calls this; stage code that builds or ``replace``-s params may too.
    Construction does not, so tests can build deliberately small or odd params in code.
    """
    problems = find_problems(params, (*RULES, *arch_rules()))
    if problems:
        raise ConfigError("\n".join(problems))


T = TypeVar("T")


def _at(where: str, key: str) -> str:
    """Dotted name of ``key`` under ``where`` (``where`` is empty at the top of the file)."""
    return f"{where}.{key}" if where else key


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
    """Build dataclass ``cls`` from a mapping that sets every field, naming any key at fault.

    A missing key is an error, not a default: the defaults mirror ``params.yaml`` for tests,
    and falling back to them would let a deleted line change an experiment unnoticed. Present
    keys are converted before missing ones are reported, so a typo (``n_melz``) is named
    rather than the key it left unset.
    """
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]
    unknown = sorted(set(raw) - set(names))
    if unknown:
        prefix = f"{where}: " if where else ""
        raise ConfigError(f"{prefix}unknown key(s) {unknown}; known keys are {sorted(names)}")
    kwargs = {k: _coerce(v, hints[k], _at(where, k)) for k, v in raw.items()}
    missing = [_at(where, k) for k in names if k not in raw]
    if missing:
        raise ConfigError(
            f"{', '.join(missing)}: missing; every key must be set (see the repo's params.yaml)"
        )
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
    """Read, type-check and validate the whole ``params.yaml``; each error line names the file."""
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
        params = from_dict(Params, raw, where="")
        validate_params(params)
    except ConfigError as exc:
        raise ConfigError("\n".join(f"{path}: {line}" for line in str(exc).splitlines())) from exc
    return params
