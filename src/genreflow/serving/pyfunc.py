"""The MLflow pyfunc that a registered genreflow model is: waveform in, genre names,
probabilities and the song vector out.

``mlflow models serve -m models:/genre-classifier@champion --env-manager local`` loads it and
answers ``POST /invocations`` with, per input waveform, the genre, the probability of every
genre (summing to 1), the L2-normalised embedding, and the identity of the model that made it
(``model_id``, ``run_id``): a vector is only comparable with vectors of the same model.

The model is logged as *models from code* (:data:`genreflow.serving.export.ENTRY_CODE`, a
three-line file that imports this class), so loading it unpickles nothing; the weights travel
as a ``torch.export`` archive and a JSON config. The serving environment needs this package
importable (``pip install -e .``, which ``make install`` does): with ``--env-manager local``
MLflow uses the current environment and installs nothing.

Request: ``{"inputs": [[s0, s1, ...]]}`` (one row per clip; float samples, mono, at the
model's sample rate), optionally ``"params": {"sample_rate": 44100}`` to have the clips
resampled. Rows of one request share a length (a tensor input); send one clip per request
otherwise.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import mlflow
import numpy as np

from genreflow.serving.core import (
    CONFIG_ARTIFACT,
    CORE_ARTIFACT,
    SERVING_FORMAT,
    channels_last_weights,
)


class GenreflowPyfunc(mlflow.pyfunc.PythonModel):
    """Scores each input row with :meth:`genreflow.serving.served.ServedModel.analyse_waveform`."""

    def __init__(self) -> None:
        self.served: Any = None  # a ServedModel once load_context ran
        self.run_id: str | None = None

    def load_context(self, context: Any) -> None:
        """Load the exported core and the serving config from the model's artifacts."""
        import torch

        from genreflow.serving.audio_stream import SegmentGeometry
        from genreflow.serving.served import NotAServingModelError, ServedModel

        config_path = Path(context.artifacts[CONFIG_ARTIFACT])
        config = json.loads(config_path.read_text())
        if config.get("format") != SERVING_FORMAT:
            raise NotAServingModelError(
                f"{config_path}: serving config format {config.get('format')!r}, expected "
                f"{SERVING_FORMAT!r}"
            )
        core_path = Path(context.artifacts[CORE_ARTIFACT])
        with warnings.catch_warnings():  # torch's advisory note on CPU-only weight groups
            warnings.filterwarnings("ignore", message=r".*No complete tensor found.*")
            core = channels_last_weights(torch.export.load(str(core_path)).module())
        model_id, self.run_id = _logged_identity(core_path)
        self.served = ServedModel(
            uri=f"models:/{model_id}" if model_id else str(core_path.parent.parent),
            core=core,
            genres=tuple(config["genres"]),
            sample_rate=int(config["sample_rate"]),
            geometry=SegmentGeometry(**config["geometry"]),
            embedding_dim=int(config["embedding_dim"]),
            model_id=model_id,
        )

    # MLflow reads the ``model_input`` hint: ``np.ndarray`` is one it infers no schema from
    # (the logged signature is the schema), and the tensor input arrives as one.
    def predict(
        self, context: Any, model_input: np.ndarray, params: dict[str, Any] | None = None
    ) -> list[dict[str, Any]]:
        """One answer per input row (see :func:`answer`)."""
        served = self.served
        sample_rate = int((params or {}).get("sample_rate") or served.sample_rate)
        return [
            answer(
                served.analyse_waveform(wave, sample_rate, path=f"input {i}"), served, self.run_id
            )
            for i, wave in enumerate(_rows(model_input))
        ]


def answer(analysis: Any, served: Any, run_id: str | None) -> dict[str, Any]:
    """The JSON answer for one clip: the prediction, the vector, and which model made them."""
    return {
        "genre": analysis.genre,
        "probabilities": {g: float(p) for g, p in analysis.probabilities.items()},
        "embedding": [float(v) for v in analysis.embedding],
        "duration_s": float(analysis.duration_s),
        "model_id": served.model_id,
        "run_id": run_id,
        "embedding_dim": int(served.embedding_dim),
        "sample_rate": int(served.sample_rate),
    }


def _rows(model_input: Any) -> list[Any]:
    """The clips of a request: a 2-D array's rows, a 1-D array as one clip, or a DataFrame's
    rows (``dataframe_split`` requests)."""
    if hasattr(model_input, "to_numpy"):  # pandas
        model_input = model_input.to_numpy()
    if isinstance(model_input, list | tuple):
        return [np.asarray(row, dtype=np.float32) for row in model_input]
    arr = np.asarray(model_input)
    if arr.dtype == object:
        return [np.asarray(row, dtype=np.float32) for row in arr.reshape(len(arr), -1)[:, 0]]
    arr = arr.astype(np.float32, copy=False)
    return [arr] if arr.ndim == 1 else list(arr)


def _logged_identity(artifact: Path) -> tuple[str | None, str | None]:
    """``(model_id, run_id)`` from the ``MLmodel`` file above an artifact of the model."""
    from mlflow.models import Model

    for directory in list(artifact.parents)[:3]:
        if (directory / "MLmodel").is_file():
            model = Model.load(str(directory / "MLmodel"))
            return getattr(model, "model_id", None), model.run_id
    return None, None
