"""The MLflow export of a trained classifier as the *serving* model.

The model logged to MLflow is the serving model: raw mono waveform at the feature sample
rate in, logits out, with the very log-mel front-end that made the training features inside.
It is saved in MLflow's ``pt2`` format (``torch.export``): loading it needs only torch, runs
no pickled code, and carries no dependency on this package's source.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import numpy as np
import torch

from genreflow.audio import load_mono
from genreflow.config import FeatureParams
from genreflow.features.frontend import LogMelFrontend, n_segments
from genreflow.features.store import FeatureStore
from genreflow.paths import Layout

EXAMPLE_CLIPS = 2  # a batch > 1, so torch.export keeps the batch dimension dynamic


def example_waveforms(
    store: FeatureStore, layout: Layout, params: FeatureParams, n_clips: int = EXAMPLE_CLIPS
) -> np.ndarray:
    """A few seconds of real training clips, float32 ``(n_clips, samples)``.

    Long enough for at least two segments: ``torch.export`` treats a size-1 dimension as a
    constant, so an example of one segment per clip would freeze the graph to one segment.
    The export itself runs size-oblivious (see :func:`log_serving_model`), so the served graph
    still accepts clips of a single segment.
    """
    index = store.index
    rows = index[index["split"] == "train"].drop_duplicates("track_id")
    if rows.empty:
        rows = index.drop_duplicates("track_id")
    paths = [Path(p) if Path(p).is_absolute() else layout.absolute(p) for p in rows["path"]]
    paths = (paths * n_clips)[:n_clips]  # repeat a clip when the store holds fewer
    frontend = LogMelFrontend(params)
    n = params.segment_samples + 2 * params.segment_hop_samples
    while n_segments(n // params.hop_length + 1, frontend.segment_frames, frontend.hop_frames) < 2:
        n += params.segment_hop_samples
    out = np.zeros((n_clips, n), dtype=np.float32)
    for i, path in enumerate(paths):
        wave = load_mono(path, params.sample_rate).numpy()[:n]
        out[i, : len(wave)] = wave
    return out


def serving_signature(example: np.ndarray, output: np.ndarray) -> Any:
    """Signature from numpy input/output, with batch *and* sample axes variable (-1).

    ``infer_signature`` fixes the sample count of the example; the ``pt2`` flavour exports
    every axis that is not ``-1`` as static, so it would reject clips of any other length.
    """
    from mlflow.models import infer_signature
    from mlflow.types.schema import Schema, TensorSpec

    inferred = infer_signature(example, output)
    in_spec = inferred.inputs.inputs[0]
    inferred.inputs = Schema([TensorSpec(in_spec.type, (-1, -1), in_spec.name)])
    return inferred


def log_serving_model(
    classifier: torch.nn.Module,
    feature_params: FeatureParams,
    genres: list[str],
    example: np.ndarray,
) -> Any:
    """Log the waveform-level model to the active run; returns MLflow's ``ModelInfo``."""
    import mlflow

    from genreflow.models.serving import WaveformGenreModel

    # Training may leave weights channels_last; strides then leak into the export's shape
    # guards (a one-segment clip fails "B * S != 1"), so export from contiguous weights.
    classifier = classifier.to(device="cpu", memory_format=torch.contiguous_format).eval()
    serving = WaveformGenreModel(
        LogMelFrontend(feature_params), classifier, feature_params, genres
    ).eval()
    with torch.no_grad():
        output = serving(torch.from_numpy(example)).numpy()
    requirements = [f"torch=={torch.__version__.split('+')[0]}", f"numpy=={np.__version__}"]
    # Size-oblivious export: without it torch.export guards "number of segments != 1", and
    # the served model would reject clips shorter than two segments.
    from torch.fx.experimental import _config as fx_config

    with warnings_quiet(), fx_config.patch(backed_size_oblivious=True):
        return mlflow.pytorch.log_model(
            pytorch_model=serving,
            name="model",
            signature=serving_signature(example, output),
            input_example=example,
            serialization_format="pt2",
            pip_requirements=requirements,  # skips a slow requirement-inference subprocess
            metadata={
                "genres": list(genres),
                "sample_rate": feature_params.sample_rate,
                "segment_samples": feature_params.segment_samples,
            },
        )


@contextlib.contextmanager
def warnings_quiet() -> Any:
    """Silence torch.export's advisory UserWarnings (e.g. LSTM flat weights) while exporting."""
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=UserWarning, module=r"torch\..*")
        warnings.filterwarnings("ignore", message=r".*were assigned during export.*")
        yield
