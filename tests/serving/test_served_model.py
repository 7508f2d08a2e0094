"""The logged model, loaded back from the registry, says what the in-memory model says.

``ServedModel.load`` (the fast path: the exported torch core, unwrapped from the pyfunc) and
``mlflow.pyfunc.load_model(...).predict`` (what ``mlflow models serve`` runs) both give the
in-memory ``WaveformGenreModel``'s probabilities and song vector, with the model's identity.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchaudio.functional as AF

from genreflow.audio import load_mono


def _expected(model, wave: torch.Tensor) -> tuple[dict[str, float], np.ndarray]:
    with torch.no_grad():
        logits, vector = model.analyse(wave[None])
    probs = torch.softmax(logits[0].double(), dim=0).tolist()
    return dict(zip(model.genres, probs, strict=True)), vector[0].numpy()


def test_served_model_equals_the_in_memory_model(tracking) -> None:
    from genreflow.serving.core import SegmentCore
    from genreflow.serving.served import ServedModel, champion_uri

    served = ServedModel.load(tracking.uri)
    assert served.uri == tracking.uri
    assert served.version == tracking.version
    assert served.model_id == tracking.model_id
    assert served.genres == tuple(tracking.model.genres)
    assert served.embedding_dim == tracking.model.embedding_dim == 16
    assert not isinstance(served.core, SegmentCore)  # the exported program, not the eager module

    result = served.analyse(tracking.clip)
    probs, vector = _expected(tracking.model, load_mono(tracking.clip, served.sample_rate))
    assert result.probabilities == pytest.approx(probs, abs=1e-5)
    assert list(result.probabilities) == sorted(probs, key=probs.get, reverse=True)
    assert sum(result.probabilities.values()) == pytest.approx(1.0, abs=1e-9)
    assert result.genre == max(probs, key=probs.get)
    np.testing.assert_allclose(result.embedding, vector, rtol=0, atol=1e-5)
    assert result.embedding.dtype == np.float32 and result.embedding.shape == (16,)
    assert float(np.linalg.norm(result.embedding)) == pytest.approx(1.0, abs=1e-6)
    assert result.duration_s == pytest.approx(1.2)

    # the same model by version number, and the default URI from params
    by_number = ServedModel.load(f"models:/genre-classifier/{tracking.version}")
    assert (by_number.version, by_number.model_id) == (tracking.version, tracking.model_id)
    from genreflow.core.config import Params

    assert champion_uri(Params()) == tracking.uri

    # the pre-analyse interface still answers (registry re-scoring uses it)
    assert served.predict(tracking.clip).genre == result.genre
    assert served.probabilities(tracking.clip).sum().item() == pytest.approx(1.0, abs=1e-6)


def test_pyfunc_answers_with_names_probabilities_vector_and_identity(tracking) -> None:
    import mlflow

    pyfunc = mlflow.pyfunc.load_model(tracking.uri)
    wave = load_mono(tracking.clip, 8000)
    answers = pyfunc.predict(np.stack([wave.numpy(), wave.numpy()[::-1].copy()]))
    assert len(answers) == 2
    probs, vector = _expected(tracking.model, wave)
    first = answers[0]
    assert first["probabilities"] == pytest.approx(probs, abs=1e-5)
    assert first["genre"] == max(probs, key=probs.get)
    np.testing.assert_allclose(first["embedding"], vector, rtol=0, atol=1e-5)
    assert first["model_id"] == tracking.model_id and first["run_id"]
    assert (first["embedding_dim"], first["sample_rate"]) == (16, 8000)
    assert answers[1]["embedding"] != first["embedding"]

    # a clip at another rate, resampled by the model (the sample_rate param)
    at_16k = AF.resample(wave, orig_freq=8000, new_freq=16000)
    resampled = pyfunc.predict(at_16k.numpy()[None], params={"sample_rate": 16000})[0]
    expected, expected_vector = _expected(tracking.model, AF.resample(at_16k, 16000, 8000))
    assert resampled["probabilities"] == pytest.approx(expected, abs=1e-5)
    np.testing.assert_allclose(resampled["embedding"], expected_vector, rtol=0, atol=1e-5)
    assert resampled["duration_s"] == pytest.approx(1.2)

    # a clip of one segment, and a shorter one (padded, as training padded)
    for n in (2400, 500):
        answer = pyfunc.predict(wave.numpy()[None, :n])[0]
        short_probs, short_vector = _expected(tracking.model, wave[:n])
        assert answer["probabilities"] == pytest.approx(short_probs, abs=1e-5)
        np.testing.assert_allclose(answer["embedding"], short_vector, rtol=0, atol=1e-5)


def test_logged_model_metadata_and_signature(tracking) -> None:
    from mlflow.models import get_model_info

    info = get_model_info(tracking.uri)
    assert info.metadata["genres"] == list(tracking.model.genres)
    assert info.metadata["sample_rate"] == 8000
    assert info.metadata["segment_samples"] == 2400
    assert info.metadata["embedding_dim"] == 16
    assert "python_function" in info.flavors and "pytorch" not in info.flavors
    (spec,) = info.signature.inputs.inputs
    assert (spec.type, tuple(spec.shape)) == (np.dtype("float32"), (-1, -1))
    assert info.signature.params.to_dict()[0]["name"] == "sample_rate"
    assert {c["name"] for c in info.signature.outputs.to_dict()} >= {
        "genre",
        "probabilities",
        "embedding",
        "model_id",
    }


def test_a_model_of_another_kind_is_refused_with_its_uri(tracking) -> None:
    """A pt2 model logged before song vectors (bare logits) is named, with the fix."""
    import mlflow
    from mlflow.tracking import MlflowClient

    from genreflow.serving.served import NotAServingModelError, ServedModel

    experiment = MlflowClient().get_experiment_by_name("serving-tests").experiment_id
    example = np.zeros((2, 8), dtype=np.float32)
    with mlflow.start_run(experiment_id=experiment):
        info = mlflow.pytorch.log_model(
            pytorch_model=torch.nn.Linear(8, 3).eval(),
            name="old",
            input_example=example,
            serialization_format="pt2",
            pip_requirements=["torch"],
        )
    with pytest.raises(NotAServingModelError, match="not a genreflow serving model") as err:
        ServedModel.load(info.model_uri)
    assert info.model_uri in str(err.value) and "dvc repro" in str(err.value)
