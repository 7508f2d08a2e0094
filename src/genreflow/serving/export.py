"""The MLflow export of a trained classifier as the *serving* model.

The model logged to MLflow is an MLflow pyfunc (:mod:`genreflow.serving.pyfunc`) around an
exported core: raw mono waveform at the feature sample rate in, per-segment logits and
embeddings out, with the very log-mel front-end that made the training features inside. The
core is a ``torch.export`` archive (an artifact of the pyfunc): loading it runs no pickled
code and needs only torch; the pyfunc adds windowing, resampling, the segment average, the
softmax over named genres and the L2-normalised song vector.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import numpy as np
import torch

from genreflow.audio import load_mono
from genreflow.core.config import FeatureParams
from genreflow.core.paths import Layout
from genreflow.features.frontend import LogMelFrontend, n_segments
from genreflow.features.store import FeatureStore

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


def serving_signature(sample_rate: int) -> Any:
    """Input: float32 waveforms ``(clips, samples)``, both axes variable (-1); one param,
    ``sample_rate`` (default: the model's), that the clips are resampled from. Output: one
    record per clip (see :func:`genreflow.serving.pyfunc.answer`)."""
    from mlflow.models import ModelSignature
    from mlflow.types.schema import (
        Array,
        ColSpec,
        DataType,
        Map,
        ParamSchema,
        ParamSpec,
        Schema,
        TensorSpec,
    )

    return ModelSignature(
        inputs=Schema([TensorSpec(np.dtype(np.float32), (-1, -1))]),
        outputs=Schema(
            [
                ColSpec(DataType.string, "genre"),
                ColSpec(Map(DataType.double), "probabilities"),
                ColSpec(Array(DataType.double), "embedding"),
                ColSpec(DataType.double, "duration_s"),
                ColSpec(DataType.string, "model_id"),
                ColSpec(DataType.string, "run_id"),
                ColSpec(DataType.long, "embedding_dim"),
                ColSpec(DataType.long, "sample_rate"),
            ]
        ),
        params=ParamSchema([ParamSpec("sample_rate", DataType.long, int(sample_rate))]),
    )


# The logged model's code (MLflow "models from code"): MLflow copies this file into the model
# and runs it on load, so nothing is unpickled. It names the wrapper class by import; the
# wrapper's code is this package's, not a copy frozen into the model, which is why changing
# it does not retrain anything (the train stages' outputs do not depend on it).
ENTRY_CODE = """\
\"\"\"MLflow models-from-code entry of a genreflow serving model (genreflow.serving.pyfunc).\"\"\"

from mlflow.models import set_model

from genreflow.serving.pyfunc import GenreflowPyfunc

set_model(GenreflowPyfunc())
"""


def export_core(serving: torch.nn.Module, example: np.ndarray, path: Path) -> Path:
    """``torch.export`` the per-segment core of ``serving`` (a ``WaveformGenreModel``) to
    ``path``: batch and sample axes dynamic, one segment accepted (size-oblivious export)."""
    from torch.export import Dim
    from torch.fx.experimental import _config as fx_config

    from genreflow.serving.core import SegmentCore

    core = SegmentCore(serving).eval()
    # Size-oblivious export: without it torch.export guards "number of segments != 1", and
    # the served model would reject clips shorter than two segments.
    with warnings_quiet(), fx_config.patch(backed_size_oblivious=True):
        program = torch.export.export(
            core, (torch.from_numpy(example),), dynamic_shapes=({0: Dim.AUTO, 1: Dim.AUTO},)
        )
        torch.export.save(program, str(path))
    return path


def log_serving_model(
    classifier: torch.nn.Module,
    feature_params: FeatureParams,
    genres: list[str],
    example: np.ndarray,
    *,
    entry_code: str = ENTRY_CODE,
) -> Any:
    """Log the serving pyfunc (core + config + entry code) to the active run; returns
    MLflow's ``ModelInfo``.

    ``entry_code`` is the models-from-code file; only tests change it, to log a model as an
    older genreflow did (its entry imported ``genreflow.pyfunc_model``) and check that such
    registered models still load."""
    import json
    import tempfile

    import mlflow

    from genreflow.serving.core import (
        CONFIG_ARTIFACT,
        CORE_ARTIFACT,
        WaveformGenreModel,
        inference_classifier,
        serving_config,
    )

    # Training may leave weights channels_last; strides then leak into the export's shape
    # guards (a one-segment clip fails "B * S != 1"), so export from contiguous weights
    # (inference_classifier copies them contiguous; it also folds BatchNorm and swaps in the
    # fast max-pool, see models.serving). The pyfunc makes them channels-last once loaded.
    serving = WaveformGenreModel(
        LogMelFrontend(feature_params), inference_classifier(classifier), feature_params, genres
    ).eval()
    config = serving_config(serving)
    requirements = [
        f"torch=={torch.__version__.split('+')[0]}",
        f"torchaudio=={_version('torchaudio')}",
        f"numpy=={np.__version__}",
        f"soundfile=={_version('soundfile')}",
        f"mlflow=={mlflow.__version__}",
    ]
    with tempfile.TemporaryDirectory(prefix="genreflow-export-") as tmp:
        core = export_core(serving, example, Path(tmp) / "core.pt2")
        config_file = Path(tmp) / "serving.json"
        config_file.write_text(json.dumps(config, indent=1))
        entry = Path(tmp) / "genreflow_model.py"
        entry.write_text(entry_code)
        one_clip = example[:1, : feature_params.segment_samples]  # a small logged example
        return mlflow.pyfunc.log_model(
            name="model",
            python_model=str(entry),
            artifacts={CORE_ARTIFACT: str(core), CONFIG_ARTIFACT: str(config_file)},
            signature=serving_signature(feature_params.sample_rate),
            input_example=one_clip,
            pip_requirements=requirements,  # skips a slow requirement-inference subprocess
            metadata={
                "genres": list(genres),
                "sample_rate": feature_params.sample_rate,
                "segment_samples": feature_params.segment_samples,
                "embedding_dim": config["embedding_dim"],
                "serving_format": config["format"],
            },
        )


def _version(distribution: str) -> str:
    from importlib.metadata import version

    return version(distribution)


@contextlib.contextmanager
def warnings_quiet() -> Any:
    """Silence torch.export's advisory UserWarnings (e.g. LSTM flat weights) while exporting."""
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=UserWarning, module=r"torch\..*")
        warnings.filterwarnings("ignore", message=r".*were assigned during export.*")
        yield
