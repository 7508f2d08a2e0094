"""Score one trained model as a promotion candidate.

On the feature path (what training measured): clip decisions on validation and test with a
bootstrap interval, the confusion outputs, all logged into the model's *training* run.
The result is the :class:`~genreflow.registry.versions.Candidate` the registry decides on and
the scores ``reports/metrics.json`` holds for this arch. Robustness (the served model on
perturbed test files) is scored for all candidates together
(:mod:`genreflow.pipeline.candidate_robustness`): each perturbed file is encoded and decoded
once.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from genreflow.core.config import Params
from genreflow.core.errors import StaleInputError
from genreflow.core.paths import Layout
from genreflow.evaluation.predict import aligned_correctness, clip_predictions
from genreflow.features.store import FeatureStore
from genreflow.registry.promotion import HeldOutClips
from genreflow.registry.versions import Candidate
from genreflow.tracking.runs import TAG_GIT_COMMIT, find_run

METRIC_PREFIX = "test_"


def _log_to_run(run_id: str, scores: dict[str, Any], val: Any, files: list[Path]) -> None:
    """Test and validation clip metrics and confusion files into the candidate's run."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient()
    flat = {
        f"{METRIC_PREFIX}accuracy": scores["accuracy"],
        f"{METRIC_PREFIX}accuracy_ci95_low": scores["accuracy_ci95_low"],
        f"{METRIC_PREFIX}accuracy_ci95_high": scores["accuracy_ci95_high"],
        f"{METRIC_PREFIX}macro_f1": scores["macro_f1"],
        "val_clip_macro_f1": val.macro_f1,
        "val_clip_accuracy_final": val.accuracy,
    }
    for genre, per in scores.get("per_class", {}).items():
        if "f1" in per:
            flat[f"{METRIC_PREFIX}f1.{genre}"] = per["f1"]
    for key, value in flat.items():
        client.log_metric(run_id, key, float(value))
    for f in files:
        client.log_artifact(run_id, str(f), artifact_path="evaluate")


def _write_confusion(layout: Layout, arch: str, ids, y_true, y_pred, genres) -> list[Path]:
    from genreflow.evaluation.confusion import (
        confusion_matrix_frame,
        confusion_rows,
        plot_confusion_png,
        write_confusion_csv,
        write_confusion_json,
    )

    frame = confusion_matrix_frame(y_true, y_pred, genres)
    files = [layout.confusion(arch, ext) for ext in ("json", "csv", "png")]
    write_confusion_json(files[0], confusion_rows(ids, y_true, y_pred, genres))
    write_confusion_csv(files[1], frame)
    plot_confusion_png(files[2], frame, f"{arch.upper()} - test clips")
    return files


def score_candidate(
    section: str,
    arch: str,
    info: dict[str, Any],
    params: Params,
    layout: Layout,
    store: FeatureStore,
    clips: HeldOutClips,
    commit: str | None,
) -> tuple[Candidate, dict[str, Any]]:
    """Validation and test scores of one trained model, its confusion outputs, its candidate.

    ``info`` is its ``run.json`` plus ``run_id`` and ``model_uri`` from MLflow
    (:func:`genreflow.pipeline.candidate_runs.candidate_run`); ``commit`` the git commit to
    record when its run has none.
    Returns the candidate and its ``metrics.json`` entry.
    """
    from genreflow.evaluation.metrics import score_clips
    from genreflow.serving.core import load_classifier

    ev = params.evaluate
    genres = store.genres
    classifier, meta = load_classifier(layout.model_file(arch))
    if list(meta["genres"]) != genres:
        raise StaleInputError(
            f"{layout.model_file(arch)}: trained on genres {meta['genres']}, but the "
            f"feature store has {genres}; run `dvc repro {section}`"
        )
    _, v_true, v_pred = clip_predictions(classifier, store, "val")
    val = score_clips(v_true, v_pred, genres, ev.bootstrap_samples, ev.bootstrap_seed)
    ids, y_true, y_pred = clip_predictions(classifier, store, "test")
    test = score_clips(y_true, y_pred, genres, ev.bootstrap_samples, ev.bootstrap_seed)
    result = {**test.to_dict(), "val_accuracy": val.accuracy, "val_macro_f1": val.macro_f1}
    files = _write_confusion(layout, arch, ids, y_true, y_pred, genres)
    _log_to_run(info["run_id"], result, val, files)

    run = find_run(info["run_id"])
    run_commit = run.data.tags.get(TAG_GIT_COMMIT) if run is not None else None
    candidate = Candidate(
        arch=arch,
        run_id=info["run_id"],
        model_uri=info["model_uri"],
        val_accuracy=float(val.accuracy),
        val_macro_f1=float(val.macro_f1),
        test_accuracy=float(test.accuracy),
        test_macro_f1=float(test.macro_f1),
        test_correct=aligned_correctness(clips.track_ids, ids, y_true, y_pred),
        git_commit=run_commit or commit,
        genres=tuple(genres),
        sample_rate=meta["feature_params"].sample_rate,
    )
    return candidate, result
