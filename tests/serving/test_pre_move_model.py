"""A model registered before the package's rooms were split still loads and answers.

Every genreflow model logged before then carries a models-from-code entry file that imports
``genreflow.pyfunc_model.GenreflowPyfunc``; the class now lives in ``genreflow.serving.pyfunc``
and ``genreflow/pyfunc_model.py`` is a shim. The old entry is pinned here literally (not read
from the package, which only knows the new one), a tiny model is logged with it through the
real export, loaded with ``mlflow.pyfunc.load_model`` as ``mlflow models serve`` would, and
must answer exactly as the same weights logged with today's ``ENTRY_CODE``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from support.tiny import GENRES, TINY_FEATURES

# The entry file of models logged before the move, byte for byte (the docstring aside).
PRE_MOVE_ENTRY_CODE = """\
\"\"\"MLflow models-from-code entry of a genreflow serving model (genreflow.pyfunc_model).\"\"\"

from mlflow.models import set_model

from genreflow.pyfunc_model import GenreflowPyfunc

set_model(GenreflowPyfunc())
"""
OLD_IMPORT = "from genreflow.pyfunc_model import GenreflowPyfunc"


def _entry_file(model_uri: str, dest: Path) -> str:
    """The models-from-code file MLflow stored with the model (what runs on load)."""
    import mlflow

    local = Path(mlflow.artifacts.download_artifacts(model_uri, dst_path=str(dest)))
    (code,) = [p for p in local.rglob("genreflow_model.py")]
    return code.read_text()


def test_a_model_logged_with_the_pre_move_entry_loads_and_answers_as_a_new_one(
    tracking, tmp_path
) -> None:
    import mlflow
    import torch
    from mlflow.tracking import MlflowClient

    from genreflow.core.config import TrainParams
    from genreflow.models import build_classifier
    from genreflow.serving.export import ENTRY_CODE, log_serving_model

    assert OLD_IMPORT not in ENTRY_CODE  # the current entry really is the new one
    features = TINY_FEATURES
    genres = list(GENRES)
    torch.manual_seed(11)
    arch = TrainParams(arch="crnn", channels=(4, 8), dense=(16,), lstm_hidden=8, dropout=0.0)
    classifier = build_classifier(arch, features.n_mels, features.segment_frames, len(genres))
    classifier = classifier.eval()
    classifier.set_input_stats(-50.0, 20.0)
    rng = np.random.default_rng(3)
    example = (0.3 * rng.standard_normal((2, 3 * features.segment_samples))).astype(np.float32)

    experiment = MlflowClient().get_experiment_by_name("serving-tests").experiment_id
    infos = {}
    for name, code in (("pre_move", PRE_MOVE_ENTRY_CODE), ("current", ENTRY_CODE)):
        with mlflow.start_run(experiment_id=experiment):
            infos[name] = log_serving_model(classifier, features, genres, example, entry_code=code)
    assert OLD_IMPORT in _entry_file(infos["pre_move"].model_uri, tmp_path / "pre")
    assert OLD_IMPORT not in _entry_file(infos["current"].model_uri, tmp_path / "cur")

    t = np.arange(int(1.2 * features.sample_rate)) / features.sample_rate
    waves = np.stack(
        [
            (0.3 * np.sin(2 * np.pi * 440.0 * t)).astype(np.float32),
            (0.2 * rng.standard_normal(t.size)).astype(np.float32),
        ]
    )
    answers = {
        name: mlflow.pyfunc.load_model(info.model_uri).predict(waves)
        for name, info in infos.items()
    }
    old, new = answers["pre_move"], answers["current"]
    assert len(old) == len(new) == 2
    for a, b in zip(old, new, strict=True):
        assert a["genre"] == b["genre"]
        assert a["probabilities"] == b["probabilities"]
        assert a["embedding"] == b["embedding"]
        assert (a["duration_s"], a["embedding_dim"], a["sample_rate"]) == (
            b["duration_s"],
            b["embedding_dim"],
            b["sample_rate"],
        )
        # each answer names its own model: the two logs are two models of the same weights
        assert a["model_id"] == infos["pre_move"].model_id
        assert b["model_id"] == infos["current"].model_id
    assert sum(old[0]["probabilities"].values()) == pytest.approx(1.0, abs=1e-9)
