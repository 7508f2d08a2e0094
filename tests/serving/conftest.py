"""A tiny registered champion for the serving tests: the tiny profile's classifier (random
weights: equality of paths, not accuracy, is under test), logged through the real export
(``genreflow.serving.export.log_serving_model``) into a fresh SQLite store, registered, and
given the ``champion`` alias.

The tiny profile comes from ``tests/model/conftest.py``, loaded under its own module name (it
cannot be imported as ``conftest``: pytest registers every ``conftest.py`` under that name).
"""

from __future__ import annotations

import contextlib
import importlib.util
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
MODEL_HELPERS = REPO / "tests" / "model" / "conftest.py"
NAME = "genre-classifier"


def model_helpers() -> ModuleType:
    """``tests/model/conftest.py`` (the tiny profile) as a module of its own name."""
    name = "genreflow_model_helpers"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, MODEL_HELPERS)
    assert spec is not None and spec.loader is not None, MODEL_HELPERS
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while the file executes
    spec.loader.exec_module(module)
    return module


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

    helpers = model_helpers()
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
    sf.write(clip, helpers._tone("metal", rng), fp.sample_rate, subtype="FLOAT")
    example = np.stack([helpers._tone(g, rng) for g in genres[:2]])
    with pytest.MonkeyPatch.context() as mp, _pointed_at(tracking):
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


@contextlib.contextmanager
def _pointed_at(uri: str):
    """MLflow's process-wide tracking and registry URIs set to ``uri``, then restored.

    An earlier test in the same process may have called ``mlflow.set_tracking_uri``, which
    wins over ``MLFLOW_TRACKING_URI``: the environment alone would register elsewhere."""
    import mlflow

    old_tracking, old_registry = mlflow.get_tracking_uri(), mlflow.get_registry_uri()
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(old_tracking)
        mlflow.set_registry_uri(old_registry)


@pytest.fixture()
def tracking(champion: Champion, monkeypatch: pytest.MonkeyPatch):
    """The champion, with MLflow (environment and process-wide URIs) naming its store."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", champion.tracking_uri)
    monkeypatch.delenv("MLFLOW_REGISTRY_URI", raising=False)
    with _pointed_at(champion.tracking_uri):
        yield champion
