"""The tiny in-process profile: a throw-away repository with real data, tiny training params,
and fresh MLflow stores. Tests reach it through the session fixture ``tiny`` (a
:class:`TinyKit`, defined in ``tests/conftest.py``) or import it from here.

``make_tiny_repo`` builds a throw-away repository: tiny WAVs whose genre is the direction of
short frequency chirps (see :func:`tone`), a validated manifest, and a feature store computed
by the real ``spectrogramize`` (so raw waveforms and features agree). Both tiny networks
classify every test clip correctly, while the per-clip mean/std baseline is at chance, so a
candidate can clear the baseline floor.
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from types import MappingProxyType

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from genreflow.core.config import (
    AugmentParams,
    DataParams,
    EvaluateParams,
    FeatureParams,
    Params,
    TrainParams,
)
from genreflow.core.paths import Layout

GENRES = ("blues", "classical", "metal")
SPLITS = {"train": 8, "val": 5, "test": 5}
CLIP_S = 1.2
TINY_FEATURES = FeatureParams(
    sample_rate=8000,
    n_fft=256,
    hop_length=128,
    n_mels=16,
    f_min=0.0,
    f_max=4000.0,
    segment_s=0.3,
    segment_hop_s=0.15,
)  # 19 frames per segment, 7 segments per 1.2-s clip


NO_AUGMENT = AugmentParams(0, 0, 0, 0, 0.0, 0, eq_db=0.0, band_limit_prob=0.0, noise_prob=0.0)


def tiny_train(arch: str, **overrides) -> TrainParams:
    cnn = arch == "cnn"
    base = TrainParams(
        arch=arch,
        epochs=8,
        batch_size=16,
        lr=0.01 if cnn else 0.05,  # the 10-weight-layer CNN without BatchNorm needs a low lr
        momentum=0.9,
        dropout=0.0,
        channels=(8, 8, 16, 16, 16) if cnn else (4, 8),  # the CNN has 5 conv blocks
        dense=(32, 32, 16, 16) if cnn else (16,),  # and 4 hidden dense layers
        lstm_hidden=8,
        lr_schedule="none",
        augment=NO_AUGMENT,  # the tiny segments are 19 frames: masks would erase them
        mixed_precision=False,
    )
    return replace(base, **overrides)


def tiny_params(**train_overrides) -> Params:
    return Params(
        seed=3,
        data=DataParams(genres=GENRES),
        features=TINY_FEATURES,
        train_cnn=tiny_train("cnn", **train_overrides),
        train_lstm=tiny_train("crnn", **train_overrides),
        evaluate=EvaluateParams(bootstrap_samples=200, bootstrap_seed=0, promotion_margin=0.0),
    )


# Each clip is a train of short chirps ("notes") with silent gaps between them: "blues"
# chirps only rise, "classical" chirps only fall, "metal" chirps alternate rise/fall. A
# falling chirp is a rising one reversed in time, the gaps are longer than the STFT window
# and a clip holds whole note pairs, so every genre has the same per-band log-mel mean and
# std: the mean/std baseline sits at chance, while the direction shows within one segment.
NOTES = {"blues": (False, False), "classical": (True, True), "metal": (False, True)}
NOTE_S = 0.2  # one chirp plus its gap; CLIP_S holds a whole number of note pairs
GAP_S = 0.045  # > n_fft / sample_rate (32 ms): no STFT frame sees two notes
FADE_S = 0.01


def tone(genre: str, rng: np.random.Generator) -> np.ndarray:
    sr = TINY_FEATURES.sample_rate
    note, gap, fade = (int(round(s * sr)) for s in (NOTE_S, GAP_S, FADE_S))
    f_lo = rng.uniform(250.0, 350.0)
    octaves = rng.uniform(2.3, 2.7)
    amp = rng.uniform(0.2, 0.5)
    n_chirp = note - gap
    u = np.arange(n_chirp) / n_chirp
    freq = f_lo * 2.0 ** (octaves * u)
    ramp = np.sin(0.5 * np.pi * np.arange(fade) / fade) ** 2
    env = np.ones(n_chirp)
    env[:fade], env[-fade:] = ramp, ramp[::-1]
    pair = []
    for falling in NOTES[genre]:
        phase = 2 * np.pi * np.cumsum(freq) / sr + rng.uniform(0, 2 * np.pi)
        chirp = amp * env * np.sin(phase)
        pair += [chirp[::-1] if falling else chirp, np.zeros(gap)]
    n = int(round(CLIP_S * sr))
    wave = np.tile(np.concatenate(pair), n // (2 * note) + 1)
    wave = np.roll(wave[:n], rng.integers(2 * note))
    return (wave + 0.02 * rng.standard_normal(n)).astype(np.float32)


def make_tiny_repo(root: Path) -> Layout:
    """WAVs + validated manifest + a real feature store under ``root``; returns its Layout."""
    from genreflow.features.stage import spectrogramize
    from genreflow.validation.decode_table import audio_hash

    layout = Layout.from_root(root)
    rng = np.random.default_rng(0)
    rows = []
    for genre in GENRES:
        for split, count in SPLITS.items():
            for k in range(count):
                track_id = f"{genre}.{split}{k}"
                rel = f"data/raw/{genre}/{track_id}.wav"
                path = layout.absolute(rel)
                path.parent.mkdir(parents=True, exist_ok=True)
                wave = tone(genre, rng)
                sf.write(path, wave, TINY_FEATURES.sample_rate, subtype="FLOAT")
                rows.append(
                    {
                        "track_id": track_id,
                        "genre": genre,
                        "split": split,
                        "path": rel,
                        "audio_sha256": audio_hash(wave),
                    }
                )
    layout.validated_dir.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(layout.validated_manifest, index=False)
    spectrogramize(TINY_FEATURES, list(GENRES), layout, progress=False, figures=False)
    return layout


_TEMPLATE_DB: list[Path] = []


def empty_tracking_db(factory: pytest.TempPathFactory, target: Path) -> str:
    """Copy an empty, fully migrated ``mlflow.db`` to ``target``; returns its URI.

    Creating a store runs MLflow's ~50 schema migrations (seconds each time); one template
    per test session, copied, keeps every test on its own store without paying that again.
    """
    if not _TEMPLATE_DB:
        from mlflow.tracking import MlflowClient

        from genreflow.tracking.store import quiet_mlflow

        quiet_mlflow()
        db = factory.mktemp("mlflow-template") / "mlflow.db"
        MlflowClient(tracking_uri=f"sqlite:///{db.as_posix()}").search_experiments()
        _TEMPLATE_DB.append(db)
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(_TEMPLATE_DB[0], target)
    return f"sqlite:///{target.as_posix()}"


def use_tracking_db(
    monkeypatch: pytest.MonkeyPatch, directory: Path, factory: pytest.TempPathFactory
) -> str:
    """Point MLFLOW_TRACKING_URI at a fresh store in ``directory``; clear DVC's variables."""
    uri = empty_tracking_db(factory, directory / "mlflow.db")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    for var in ("DVC_STAGE", "DVC_EXP_NAME", "MLFLOW_REGISTRY_URI"):
        monkeypatch.delenv(var, raising=False)
    return uri


@contextlib.contextmanager
def pointed_at(uri: str) -> Iterator[None]:
    """MLflow's process-wide tracking and registry URIs set to ``uri``, then restored.

    Why: ``mlflow.set_tracking_uri`` (which every stage calls) wins over
    ``MLFLOW_TRACKING_URI`` for the rest of the process, so a test that names its store through
    the environment alone would read whichever store an earlier test pointed MLflow at."""
    import mlflow

    old_tracking, old_registry = mlflow.get_tracking_uri(), mlflow.get_registry_uri()
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(old_tracking)
        mlflow.set_registry_uri(old_registry)


@dataclass(frozen=True)
class TinyKit:
    """What the ``tiny`` fixture hands a test: the tiny profile's data and helpers."""

    genres: tuple[str, ...]
    splits: Mapping[str, int]  # clips per genre in each split
    features: FeatureParams
    no_augment: AugmentParams
    train: Callable[..., TrainParams]  # train(arch, **overrides)
    params: Callable[..., Params]  # params(**train_overrides), for both networks
    make_repo: Callable[[Path], Layout]  # make_repo(root): WAVs, manifest, feature store
    tracking_db: Callable[[pytest.TempPathFactory, Path], str]  # tracking_db(factory, target)
    use_tracking_db: Callable[[pytest.MonkeyPatch, Path, pytest.TempPathFactory], str]


def kit() -> TinyKit:
    """The tiny profile's constants and helpers, as the ``tiny`` fixture hands them out."""
    return TinyKit(
        genres=GENRES,
        splits=MappingProxyType(SPLITS),
        features=TINY_FEATURES,
        no_augment=NO_AUGMENT,
        train=tiny_train,
        params=tiny_params,
        make_repo=make_tiny_repo,
        tracking_db=empty_tracking_db,
        use_tracking_db=use_tracking_db,
    )
