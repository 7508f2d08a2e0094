"""The ``train_cnn`` / ``train_lstm`` DVC stages: train, track in MLflow, log the served model.

Outputs under ``models/<arch>/`` (``arch`` is ``cnn`` or ``crnn``; the paths are
:class:`genreflow.core.paths.Layout`'s):

- ``checkpoint.pt``: resumable state (a ``persist: true`` output; see training.loop);
- ``mlflow_run_id``: the MLflow run this checkpoint belongs to (persist it too; see
  training.epoch_log);
- ``model.pt``: best-epoch weights plus configs (:func:`genreflow.serving.core.save_model`);
- ``run.json``: the scores ``evaluate`` reads (see tracking.run_info), content only: the run
  id, the logged model's URI and timings are provenance, kept in MLflow (and the run id in
  ``mlflow_run_id``). Written last, so its presence means the stage completed.

The run also logs the tracks it trained and was selected on (``split/train_val_tracks.csv``,
see :mod:`genreflow.tracking.training_tracks`), so the registry can tell whether a later test
split would
re-score this model on its own training clips, and the validated manifest as its ``training``
dataset input (training.dataset_input), which fills the MLflow runs table's Dataset column.

Under torchrun (``world_size`` ranks, see :mod:`genreflow.pipeline.launch`) every rank trains
its shard of each global batch, and rank 0 alone logs to MLflow and writes the outputs above:
one MLflow run per training, whatever the world size (tag ``world_size``).

This module only orchestrates; each job has its own module: the feature-store check
(training.store_check), the per-epoch plots file and MLflow metrics (training.epoch_log),
the serving-model export (training.export) and the ``run.json`` reader (training.run_info).
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any

from genreflow.core.atomic import write_json
from genreflow.core.config import TRAIN_SECTIONS, Params, TrainParams, TrainSection
from genreflow.core.paths import Layout
from genreflow.features.store import FeatureStore
from genreflow.features.store_check import check_store_matches
from genreflow.serving.export import example_waveforms, log_serving_model
from genreflow.tracking.dataset_input import log_manifest_input
from genreflow.tracking.epoch_log import EpochLogger
from genreflow.tracking.numeric_env import log_numeric_environment
from genreflow.tracking.store import configure_mlflow
from genreflow.tracking.training_tracks import log_training_tracks

log = logging.getLogger(__name__)


def train_stage(
    params: Params, section: TrainSection, layout: Layout, progress: bool = True
) -> dict[str, Any]:
    """Run one training stage end to end.

    Returns what it wrote to ``run.json`` plus the provenance left out of it: ``run_id`` and
    ``model_uri`` (the run's logged model).
    """
    import mlflow

    from genreflow.models import build_classifier
    from genreflow.serving.core import save_model
    from genreflow.training.distributed import Ranks, process_group
    from genreflow.training.loop import TrainResult, train_classifier

    if section not in TRAIN_SECTIONS:
        raise ValueError(f"unknown training section {section!r}; expected one of {TRAIN_SECTIONS}")
    train: TrainParams = getattr(params, section)
    arch = train.arch

    store = FeatureStore.load(layout.features_dir)
    feature_params = check_store_matches(store, params.features, layout.features_dir)
    genres = store.genres
    _, n_mels, n_frames = store.features.shape
    classifier = build_classifier(train, int(n_mels), int(n_frames), len(genres))
    ranks = Ranks.from_env()

    def fit(on_epoch: EpochLogger | None) -> TrainResult:
        with process_group(ranks) as device:
            return train_classifier(
                classifier,
                store,
                train,
                seed=params.seed,
                checkpoint_path=layout.checkpoint(arch),
                on_epoch=on_epoch,
                on_start=on_epoch.start if on_epoch is not None else None,
                # one process: select_device's choice, as before torchrun support
                device=device if ranks.distributed else None,
                progress=progress and ranks.is_main,
                memory_budget_gb=params.runtime.memory_budget_gb,
                ranks=ranks,
            )

    if not ranks.is_main:  # trains its shard, logs and writes nothing
        fit(None)
        return {}
    if ranks.world_size != params.world_size:
        log.warning(
            "%s: torchrun started %d ranks but world_size is %d; training with %d "
            "(recorded as the MLflow tag world_size)",
            section,
            ranks.world_size,
            params.world_size,
            ranks.world_size,
        )
    layout.model_dir(arch).mkdir(parents=True, exist_ok=True)
    experiment = params.tracking.experiment
    configure_mlflow(layout, experiment)

    with contextlib.ExitStack() as stack:
        logger = EpochLogger(layout, params, section, stack)
        result = fit(logger)
        run_id = logger.finish(result.history, result.resumed_from_epoch)
        mlflow.log_metrics(
            {
                "best_epoch": float(result.best_epoch),
                "best_val_clip_accuracy": float(result.best_val_clip_accuracy),
                "epochs_run": float(len(result.history)),
            }
        )
        log_numeric_environment()
        mlflow.set_tags(
            {
                "stopped_early": str(result.stopped_early).lower(),
                "resumed_from_epoch": str(result.resumed_from_epoch or 0),
                "world_size": str(ranks.world_size),
                # runtime.memory_budget_gb's effect: which splits were read from the store
                "streamed_splits": ",".join(result.streamed_splits) or "none",
            }
        )
        classifier = classifier.cpu().eval()
        save_model(
            layout.model_file(arch),
            classifier,
            train,
            feature_params,
            genres,
            # Content only: the run id is provenance (run.json, MLflow), and in the weights file
            # it would give a re-run that reuses the finished checkpoint other bytes.
            extra={
                "best_epoch": result.best_epoch,
                "best_val_clip_accuracy": result.best_val_clip_accuracy,
            },
        )
        mlflow.log_artifact(str(layout.training_curve(arch)), artifact_path="training")
        log_training_tracks(layout.validated_manifest)
        log_manifest_input(layout.validated_manifest)
        example = example_waveforms(store, layout, feature_params)
        info = log_serving_model(classifier, feature_params, genres, example)
        # Content only (a DVC output): the same inputs give the same bytes. The run id, the
        # model URI (a random id), the tracking URI (a machine path) and a resume's epoch are
        # provenance; MLflow has them (the run id also in mlflow_run_id).
        summary = {
            "experiment": experiment,
            "arch": arch,
            "section": section,
            "best_epoch": int(result.best_epoch),
            "best_val_clip_accuracy": float(result.best_val_clip_accuracy),
            "epochs_run": len(result.history),
            "stopped_early": bool(result.stopped_early),
        }
        write_json(layout.run_info(arch), summary)
    return {**summary, "run_id": run_id, "model_uri": info.model_uri}
