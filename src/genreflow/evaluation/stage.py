"""The ``evaluate`` DVC stage: test scores, confusion outputs, registration and promotion.

For each trained candidate (CNN, CRNN) it scores clip-level decisions on the test split of
the feature store (mean of segment logits, then argmax: the decision serving makes), with a
bootstrap interval; it writes the confusion matrix (CSV + PNG) and per-clip confusion rows
(JSON, for ``dvc plots``), logs all of it into the candidate's *training* run, then registers
both candidates and applies the promotion rule of :mod:`genreflow.registry`.

Outputs: ``reports/metrics.json`` (DVC metrics), ``reports/promotion.json`` (this run's
decisions and the scores compared), ``reports/promotion_log.jsonl`` (every decision ever made,
one JSON line each; a ``persist`` output) and ``reports/evaluate/confusion_<arch>.{json,csv,png}``.

The stage needs the candidates' MLflow runs. DVC can restore a training stage's outputs from
its run-cache without running it, or ``mlflow.db`` may have been deleted; then ``run.json``
names a run the store does not hold, and the stage stops with the command that fixes it.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from genreflow.atomic import atomic_path, write_json
from genreflow.config import Params
from genreflow.errors import GenreflowError
from genreflow.features.store import FeatureStore
from genreflow.paths import Layout
from genreflow.tracking import TAG_GIT_COMMIT, configure_mlflow, find_run, git_commit
from genreflow.training.stage import SECTIONS, model_path, read_run_info

METRIC_PREFIX = "test_"


class MissingRunError(GenreflowError, RuntimeError):
    """``run.json`` names an MLflow run that the tracking store does not hold."""


def evaluate_dir(layout: Layout) -> Path:
    return layout.reports_dir / "evaluate"


def metrics_path(layout: Layout) -> Path:
    return layout.reports_dir / "metrics.json"


def promotion_path(layout: Layout) -> Path:
    return layout.reports_dir / "promotion.json"


def promotion_log_path(layout: Layout) -> Path:
    return layout.reports_dir / "promotion_log.jsonl"


def append_promotion_log(path: Path, entries: list[dict[str, Any]]) -> None:
    """Append one JSON line per decision to the persistent history (rewritten atomically).

    ``promotion.json`` shows only the latest evaluation; this log (a ``persist: true`` DVC
    output) keeps every decision ever made, so the champion's lineage can be audited.
    """
    old = path.read_text() if path.is_file() else ""
    if old and not old.endswith("\n"):
        old += "\n"
    lines = "".join(json.dumps(e, sort_keys=True) + "\n" for e in entries)
    with atomic_path(path) as tmp:
        tmp.write_text(old + lines)


def missing_run_message(section: str, arch: str, run_id: str, tracking_uri: str) -> str:
    return (
        f"models/{arch}/run.json names MLflow run {run_id}, but the tracking store "
        f"{tracking_uri} does not hold it. This happens when DVC restored `{section}` from its "
        f"run-cache (its code, and so its MLflow logging, never ran here) or when mlflow.db was "
        f"deleted or replaced. Fix: `dvc repro --force {section}` (then `dvc repro evaluate`); "
        f"`dvc repro --no-run-cache` avoids run-cache restores altogether."
    )


def load_test_clips(store: FeatureStore, layout: Layout) -> Any:
    """The test split as raw audio paths with true genre names, in first-seen order."""
    from genreflow.registry import HeldOutClips

    index = store.index
    rows = index[index["split"] == "test"].drop_duplicates("track_id")
    paths = tuple(Path(p) if Path(p).is_absolute() else layout.absolute(p) for p in rows["path"])
    return HeldOutClips(
        track_ids=tuple(rows["track_id"].astype(str)),
        paths=paths,
        genres=tuple(rows["genre"].astype(str)),
    )


def clip_predictions(
    classifier: Any, store: FeatureStore
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(track ids, y_true, y_pred)`` per test clip from the feature path."""
    from genreflow.training.clip_metrics import clip_labels, clip_logits
    from genreflow.training.loop import predict_segments, select_device

    x, y, ids = store.split("test")
    if len(x) == 0:
        raise ValueError("the feature store has no test segments; check the validate split")
    seg_logits = predict_segments(classifier, x, device=select_device())
    clip_ids, logits = clip_logits(seg_logits, ids)
    truth_ids, truth = clip_labels(y, ids)
    if not np.array_equal(clip_ids, truth_ids):  # both are first-seen order; guard anyway
        raise AssertionError("clip order of logits and labels differs")
    return clip_ids, truth, logits.argmax(axis=1).astype(np.int64)


def _log_to_run(run_id: str, scores: dict[str, Any], files: list[Path]) -> None:
    """Test metrics and confusion files into the candidate's training run (step 0)."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient()
    flat = {
        "accuracy": scores["accuracy"],
        "accuracy_ci95_low": scores["accuracy_ci95_low"],
        "accuracy_ci95_high": scores["accuracy_ci95_high"],
        "macro_f1": scores["macro_f1"],
    }
    for genre, per in scores.get("per_class", {}).items():
        if "f1" in per:
            flat[f"f1.{genre}"] = per["f1"]
    for key, value in flat.items():
        client.log_metric(run_id, f"{METRIC_PREFIX}{key}", float(value))
    for f in files:
        client.log_artifact(run_id, str(f), artifact_path="evaluate")


def evaluate_stage(params: Params, layout: Layout, progress: bool = True) -> dict[str, Any]:
    """Score, report, register and promote; returns the metrics and the decisions."""
    from genreflow.evaluation.baseline import run_baseline
    from genreflow.evaluation.confusion import (
        confusion_matrix_frame,
        confusion_rows,
        plot_confusion_png,
        write_confusion_csv,
        write_confusion_json,
    )
    from genreflow.evaluation.metrics import score_clips
    from genreflow.models.serving import load_classifier
    from genreflow.registry import Candidate, register_and_promote

    ev = params.evaluate
    sections = {s: getattr(params, s).arch for s in SECTIONS}
    if len(set(sections.values())) != len(sections):
        raise ValueError(
            f"params.yaml: train_cnn and train_lstm both train arch {sections['train_cnn']!r}; "
            "their models would overwrite each other under models/<arch>/"
        )
    tracking_uri = configure_mlflow(layout, ev.experiment)

    # Check every candidate's run first: fail before writing anything.
    infos: dict[str, dict[str, Any]] = {}
    for section, arch in sections.items():
        info = read_run_info(layout, arch)
        if find_run(info["run_id"]) is None:
            raise MissingRunError(missing_run_message(section, arch, info["run_id"], tracking_uri))
        infos[arch] = info

    store = FeatureStore.load(layout.features_dir)
    genres = store.genres
    out_dir = evaluate_dir(layout)
    metrics: dict[str, Any] = {}
    candidates: list[Candidate] = []
    commit = git_commit(layout.root)
    for section, arch in sections.items():
        info = infos[arch]
        classifier, meta = load_classifier(model_path(layout, arch))
        if list(meta["genres"]) != genres:
            raise ValueError(
                f"{model_path(layout, arch)}: trained on genres {meta['genres']}, but the "
                f"feature store has {genres}; run `dvc repro {section}`"
            )
        ids, y_true, y_pred = clip_predictions(classifier, store)
        scores = score_clips(y_true, y_pred, genres, ev.bootstrap_samples, ev.bootstrap_seed)
        result = scores.to_dict()
        metrics[arch] = result

        frame = confusion_matrix_frame(y_true, y_pred, genres)
        files = [
            out_dir / f"confusion_{arch}.json",
            out_dir / f"confusion_{arch}.csv",
            out_dir / f"confusion_{arch}.png",
        ]
        write_confusion_json(files[0], confusion_rows(ids, y_true, y_pred, genres))
        write_confusion_csv(files[1], frame)
        plot_confusion_png(files[2], frame, f"{arch.upper()} - test clips")
        _log_to_run(info["run_id"], result, files)

        run = find_run(info["run_id"])
        run_commit = run.data.tags.get(TAG_GIT_COMMIT) if run is not None else None
        candidates.append(
            Candidate(
                arch=arch,
                run_id=info["run_id"],
                model_uri=info["model_uri"],
                accuracy=float(scores.accuracy),
                macro_f1=float(scores.macro_f1),
                git_commit=run_commit or commit,
                genres=tuple(genres),
                sample_rate=meta["feature_params"].sample_rate,
            )
        )

    _, b_true, b_pred = run_baseline(store, params.seed)
    baseline = score_clips(b_true, b_pred, genres, ev.bootstrap_samples, ev.bootstrap_seed)
    metrics["baseline"] = baseline.to_dict()
    write_json(metrics_path(layout), metrics)

    clips = load_test_clips(store, layout)
    decisions = register_and_promote(
        ev.registered_model,
        candidates,
        clips,
        ev.promotion_margin,
        default_genres=genres,
        default_sample_rate=store.feature_params.sample_rate,
        progress=progress,
    )
    from genreflow.registry import CHAMPION_ALIAS, get_alias

    champion = get_alias(ev.registered_model, CHAMPION_ALIAS)
    promotion = {
        "registered_model": ev.registered_model,
        "promotion_margin": ev.promotion_margin,
        "metric": "test clip accuracy",
        "test_split_hash": clips.split_hash,
        "test_clips": len(clips.track_ids),
        "champion_version": str(champion.version) if champion is not None else None,
        "champion_arch": (champion.tags or {}).get("arch") if champion is not None else None,
        "decisions": [d.to_dict() for d in decisions],
    }
    write_json(promotion_path(layout), promotion)
    now = datetime.now(UTC).isoformat(timespec="seconds")
    append_promotion_log(
        promotion_log_path(layout),
        [
            {
                "time": now,
                "registered_model": ev.registered_model,
                "champion_after": promotion["champion_version"],
                **d.to_dict(),
            }
            for d in decisions
        ],
    )
    return {"metrics": metrics, "promotion": promotion}
