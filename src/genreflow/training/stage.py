"""The ``train_cnn`` / ``train_lstm`` DVC stages: train, track in MLflow, log the served model.

Outputs under ``models/<arch>/`` (``arch`` is ``cnn`` or ``crnn``):

- ``checkpoint.pt``: resumable state (a ``persist: true`` output; see training.loop);
- ``mlflow_run_id``: the MLflow run this checkpoint belongs to (persist it too), so a killed
  stage that resumes from its checkpoint also resumes its MLflow run instead of starting a
  second, partial one;
- ``model.pt``: best-epoch weights plus configs (:func:`genreflow.models.serving.save_model`);
- ``run.json``: run id, logged-model URI and scores, which ``evaluate`` reads. Written last,
  so its presence means the stage completed.

The run also logs the tracks it trained and was selected on (``split/train_val_tracks.csv``,
see :mod:`genreflow.split_lists`), so the registry can tell whether a later test split would
re-score this model on its own training clips.

``reports/training/<arch>.csv`` holds one row per epoch (DVC plots: training curves); it is
rewritten after every epoch so a running stage can be watched with ``dvc plots show``.

The model logged to MLflow is the *serving* model: raw mono waveform at the feature sample
rate in, logits out, with the very log-mel front-end that made the training features inside.
It is saved in MLflow's ``pt2`` format (``torch.export``): loading it needs only torch, runs
no pickled code, and carries no dependency on this package's source.
"""

from __future__ import annotations

import contextlib
import csv
import logging
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from genreflow.atomic import atomic_path, write_json
from genreflow.audio import load_mono
from genreflow.config import FeatureParams, Params, TrainParams
from genreflow.features.frontend import LogMelFrontend, n_segments
from genreflow.features.store import FeatureStore
from genreflow.paths import Layout
from genreflow.split_lists import log_training_tracks
from genreflow.tracking import configure_mlflow, find_run, training_run

log = logging.getLogger(__name__)

Section = Literal["train_cnn", "train_lstm"]
SECTIONS: tuple[str, ...] = ("train_cnn", "train_lstm")
CSV_COLUMNS = (
    "epoch",
    "train_loss",
    "train_accuracy",
    "val_loss",
    "val_accuracy",
    "val_clip_accuracy",
    "lr",
    "seconds",
)
# MLflow metric name per EpochMetrics field (``seconds`` reads better as a duration).
METRIC_NAMES = {c: ("epoch_seconds" if c == "seconds" else c) for c in CSV_COLUMNS[1:]}
EXAMPLE_CLIPS = 2  # a batch > 1, so torch.export keeps the batch dimension dynamic


def model_dir(layout: Layout, arch: str) -> Path:
    return layout.models_dir / arch


def checkpoint_path(layout: Layout, arch: str) -> Path:
    return model_dir(layout, arch) / "checkpoint.pt"


def run_id_path(layout: Layout, arch: str) -> Path:
    return model_dir(layout, arch) / "mlflow_run_id"


def model_path(layout: Layout, arch: str) -> Path:
    return model_dir(layout, arch) / "model.pt"


def run_info_path(layout: Layout, arch: str) -> Path:
    return model_dir(layout, arch) / "run.json"


def plots_path(layout: Layout, arch: str) -> Path:
    return layout.reports_dir / "training" / f"{arch}.csv"


def section_for_arch(arch: str) -> str:
    """The params section / DVC stage that trains ``arch`` (for messages naming commands)."""
    return "train_cnn" if arch == "cnn" else "train_lstm"


# --------------------------------------------------------------------------- helpers
def check_store_matches(store: FeatureStore, params: FeatureParams, where: Path) -> FeatureParams:
    """The store's feature params, after checking ``params.yaml`` still describes them.

    A store made with other features than ``params.yaml`` says would train a model whose
    served front-end disagrees with the config; ``workers`` alone does not matter.
    """
    stored = store.feature_params
    if replace(stored, workers=0) != replace(params, workers=0):
        raise ValueError(
            f"{where / 'meta.json'}: the feature store was made with {asdict(stored)}, but "
            f"params.yaml features are {asdict(params)}; run `dvc repro spectrogramize`"
        )
    return stored


def write_epochs_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    """Atomically (re)write the DVC plots file, one row per epoch in epoch order."""
    with atomic_path(path) as tmp, tmp.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(CSV_COLUMNS), extrasaction="ignore")
        writer.writeheader()
        for row in sorted(rows, key=lambda r: int(r["epoch"])):
            writer.writerow(row)


def _checkpoint_history(path: Path) -> list[dict[str, Any]]:
    """Epoch rows already in a checkpoint (for the plots file of a resumed stage), or []."""
    from genreflow.training.checkpoint import CheckpointError, load_checkpoint

    try:
        state = load_checkpoint(path)
    except CheckpointError:
        return []
    return [dict(h) for h in state["history"]] if state else []


def _logged_steps(run_id: str) -> set[int]:
    """Epochs whose metrics this run already holds (so a resumed run is not duplicated)."""
    from mlflow.tracking import MlflowClient

    key = METRIC_NAMES["val_clip_accuracy"]
    return {int(m.step) for m in MlflowClient().get_metric_history(run_id, key)}


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


# --------------------------------------------------------------------------- the stage
class _EpochLogger:
    """Receives epochs from the training loop; owns the plots file and the MLflow run.

    The MLflow run is opened on the first epoch (or after training, if no epoch ran), when it
    is known whether the loop resumed from its checkpoint: only then is the previous run
    continued, and only epochs it does not hold yet are logged.
    """

    def __init__(
        self, layout: Layout, params: Params, section: str, stack: contextlib.ExitStack
    ) -> None:
        arch = getattr(params, section).arch
        self.layout, self.params, self.section, self.arch = layout, params, section, arch
        self.stack = stack
        self.rows: dict[int, dict[str, Any]] = {
            int(h["epoch"]): h for h in _checkpoint_history(checkpoint_path(layout, arch))
        }
        self.run_id: str | None = None
        self.logged: set[int] = set()
        self.resumed_run = False

    def open_run(self, resumed: bool) -> str:
        if self.run_id is not None:
            return self.run_id
        id_file = run_id_path(self.layout, self.arch)
        previous = id_file.read_text().strip() if id_file.is_file() else None
        active = self.stack.enter_context(
            training_run(self.layout, self.params, self.section, previous, resume=resumed)
        )
        self.run_id = active.info.run_id
        self.resumed_run = previous is not None and self.run_id == previous
        self.logged = _logged_steps(self.run_id) if self.resumed_run else set()
        with atomic_path(id_file) as tmp:
            tmp.write_text(self.run_id + "\n")
        return self.run_id

    def log_missing(self) -> None:
        import mlflow

        for epoch in sorted(set(self.rows) - self.logged):
            row = self.rows[epoch]
            mlflow.log_metrics({METRIC_NAMES[k]: float(row[k]) for k in METRIC_NAMES}, step=epoch)
            self.logged.add(epoch)

    def __call__(self, metrics: Any) -> None:
        row = metrics.as_dict()
        epoch = int(row["epoch"])
        # a fresh start (epoch 1) or a restart from an earlier epoch supersedes later rows
        self.rows = {e: r for e, r in self.rows.items() if e < epoch}
        self.rows[epoch] = row
        write_epochs_csv(plots_path(self.layout, self.arch), list(self.rows.values()))
        self.open_run(resumed=epoch > 1)
        self.log_missing()

    def finish(self, history: list[Any], resumed_from: int | None) -> str:
        self.rows = {int(m.epoch): m.as_dict() for m in history}
        write_epochs_csv(plots_path(self.layout, self.arch), list(self.rows.values()))
        run_id = self.open_run(resumed=resumed_from is not None)
        self.log_missing()
        return run_id


def train_stage(
    params: Params, section: Section, layout: Layout, progress: bool = True
) -> dict[str, Any]:
    """Run one training stage end to end; returns what it wrote to ``run.json``."""
    import mlflow

    from genreflow.models import build_classifier
    from genreflow.models.serving import save_model
    from genreflow.training.loop import train_classifier

    if section not in SECTIONS:
        raise ValueError(f"unknown training section {section!r}; expected one of {SECTIONS}")
    train: TrainParams = getattr(params, section)
    arch = train.arch
    if train.num_threads > 0:
        torch.set_num_threads(train.num_threads)

    store = FeatureStore.load(layout.features_dir)
    feature_params = check_store_matches(store, params.features, layout.features_dir)
    genres = store.genres
    _, n_mels, n_frames = store.features.shape
    classifier = build_classifier(train, int(n_mels), int(n_frames), len(genres))
    model_dir(layout, arch).mkdir(parents=True, exist_ok=True)
    experiment = params.evaluate.experiment
    tracking_uri = configure_mlflow(layout, experiment)

    with contextlib.ExitStack() as stack:
        logger = _EpochLogger(layout, params, section, stack)
        result = train_classifier(
            classifier,
            store,
            train,
            seed=params.seed,
            checkpoint_path=checkpoint_path(layout, arch),
            on_epoch=logger,
            progress=progress,
        )
        run_id = logger.finish(result.history, result.resumed_from_epoch)
        mlflow.log_metrics(
            {
                "best_epoch": float(result.best_epoch),
                "best_val_clip_accuracy": float(result.best_val_clip_accuracy),
                "epochs_run": float(len(result.history)),
            }
        )
        mlflow.set_tags(
            {
                "stopped_early": str(result.stopped_early).lower(),
                "resumed_from_epoch": str(result.resumed_from_epoch or 0),
            }
        )
        classifier = classifier.cpu().eval()
        save_model(
            model_path(layout, arch),
            classifier,
            train,
            feature_params,
            genres,
            extra={
                "run_id": run_id,
                "best_epoch": result.best_epoch,
                "best_val_clip_accuracy": result.best_val_clip_accuracy,
            },
        )
        mlflow.log_artifact(str(plots_path(layout, arch)), artifact_path="training")
        log_training_tracks(layout.validated_manifest)
        example = example_waveforms(store, layout, feature_params)
        info = log_serving_model(classifier, feature_params, genres, example)
        summary = {
            "run_id": run_id,
            "model_uri": info.model_uri,
            "tracking_uri": tracking_uri,
            "experiment": experiment,
            "arch": arch,
            "section": section,
            "best_epoch": int(result.best_epoch),
            "best_val_clip_accuracy": float(result.best_val_clip_accuracy),
            "epochs_run": len(result.history),
            "stopped_early": bool(result.stopped_early),
            "resumed_from_epoch": result.resumed_from_epoch,
        }
        write_json(run_info_path(layout, arch), summary)
    return summary


def read_run_info(layout: Layout, arch: str) -> dict[str, Any]:
    """``models/<arch>/run.json``, or a clear error naming the stage that writes it."""
    import json

    path = run_info_path(layout, arch)
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: missing; run `dvc repro {section_for_arch(arch)}` to train the {arch} model"
        )
    try:
        info = json.loads(path.read_text())
    except ValueError as exc:
        raise ValueError(f"{path}: not valid JSON ({exc}); re-run the training stage") from exc
    for key in ("run_id", "model_uri"):
        if not info.get(key):
            raise ValueError(f"{path}: no {key!r}; re-run `dvc repro {section_for_arch(arch)}`")
    return info


def run_exists(run_id: str) -> bool:
    """Whether the configured tracking store still holds (an undeleted) ``run_id``."""
    return find_run(run_id) is not None
