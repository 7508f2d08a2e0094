"""A tiny registered champion for the serving tests: the tiny profile's classifier (random
weights: equality of paths, not accuracy, is under test), logged through the real export
(``genreflow.serving.export.log_serving_model``) into a fresh SQLite store, registered, and
given the ``champion`` alias.

The tiny profile comes from :mod:`support.tiny`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from support import tiny as helpers
from support.tiny import pointed_at

NAME = "genre-classifier"


@dataclass(frozen=True)
class Champion:
    tracking_uri: str
    uri: str  # models:/<NAME>@champion
    model_id: str
    version: str
    model: object  # the in-memory WaveformGenreModel that was logged
    clip: Path  # a tiny-profile WAV (1.2 s at 8 kHz)


@pytest.fixture(scope="session")
def champion(tmp_path_factory: pytest.TempPathFactory) -> Champion:
    """The tiny CRNN logged as the serving pyfunc and registered as ``NAME@champion``.

    The store is named through ``MLFLOW_TRACKING_URI`` only while it is built (no
    ``mlflow.set_tracking_uri`` or active experiment left behind for other tests); tests that
    read it set the variable themselves (the ``tracking`` fixture).
    """
    import mlflow
    import soundfile as sf
    import torch
    from mlflow.tracking import MlflowClient

    from genreflow.features.frontend import LogMelFrontend
    from genreflow.models import build_classifier
    from genreflow.serving.core import WaveformGenreModel
    from genreflow.serving.export import log_serving_model
    from genreflow.tracking.store import quiet_mlflow

    fp, genres = helpers.TINY_FEATURES, list(helpers.GENRES)
    root = tmp_path_factory.mktemp("champion")
    tracking = helpers.empty_tracking_db(tmp_path_factory, root / "mlflow.db")
    torch.manual_seed(7)
    classifier = build_classifier(
        helpers.tiny_train("crnn"), fp.n_mels, fp.segment_frames, len(genres)
    ).eval()
    classifier.set_input_stats(-50.0, 20.0)
    rng = np.random.default_rng(0)
    clip = root / "clip.wav"
    sf.write(clip, helpers.tone("metal", rng), fp.sample_rate, subtype="FLOAT")
    example = np.stack([helpers.tone(g, rng) for g in genres[:2]])
    with pytest.MonkeyPatch.context() as mp, pointed_at(tracking):
        mp.setenv("MLFLOW_TRACKING_URI", tracking)
        mp.delenv("MLFLOW_REGISTRY_URI", raising=False)
        quiet_mlflow()
        client = MlflowClient()
        experiment = client.create_experiment("serving-tests")
        with mlflow.start_run(experiment_id=experiment):
            info = log_serving_model(classifier, fp, genres, example)
        mv = mlflow.register_model(info.model_uri, NAME)
        client.set_registered_model_alias(NAME, "champion", mv.version)
    model = WaveformGenreModel(LogMelFrontend(fp), classifier, fp, genres).eval()
    return Champion(
        tracking_uri=tracking,
        uri=f"models:/{NAME}@champion",
        model_id=info.model_id,
        version=str(mv.version),
        model=model,
        clip=clip,
    )


@pytest.fixture()
def tracking(champion: Champion, monkeypatch: pytest.MonkeyPatch):
    """The champion, with MLflow (environment and process-wide URIs) naming its store."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", champion.tracking_uri)
    monkeypatch.delenv("MLFLOW_REGISTRY_URI", raising=False)
    with pointed_at(champion.tracking_uri):
        yield champion
