"""The ``evaluate`` DVC stage: scores, confusion outputs, registration and promotion.

For each trained candidate (CNN, CRNN) it scores clip-level decisions on the validation and
test splits of the feature store (mean of segment logits, then argmax: the decision serving
makes), with a bootstrap interval; it writes the confusion matrix (CSV + PNG) and per-clip
confusion rows (JSON, for ``dvc plots``) and logs all of it into the candidate's *training*
run. Then :func:`genreflow.registry.promotion.register_and_promote` registers both, selects
one on **validation**, and gates it on **test** with a paired bootstrap against the champion
(or, with no champion, against the classical baseline scored here on the same clips).

Outputs: ``reports/metrics.json`` (DVC metrics), ``reports/promotion.json`` (this run's
decisions and the scores compared), ``reports/promotion_log.jsonl`` (every decision ever made,
one JSON line each; a ``persist`` output) and ``reports/evaluate/confusion_<arch>.{json,csv,png}``.
Last, with the champion just decided, it rebuilds the similar-song index
``models/similarity_index/`` and adds the champion's retrieval scores to ``metrics.json``
under ``retrieval`` (:mod:`genreflow.similarity.build`).

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

from genreflow.core.atomic import atomic_path, write_json
from genreflow.core.config import ConfigError, Params
from genreflow.core.errors import GenreflowError, StaleInputError
from genreflow.core.paths import Layout
from genreflow.features.store import FeatureStore
from genreflow.pipeline.train import SECTIONS
from genreflow.registry.promotion import HeldOutClips
from genreflow.registry.versions import Candidate
from genreflow.tracking.run_info import read_run_info
from genreflow.tracking.runs import TAG_GIT_COMMIT, find_run, git_commit
from genreflow.tracking.store import configure_mlflow

METRIC_PREFIX = "test_"


class MissingRunError(GenreflowError, RuntimeError):
    """``run.json`` names an MLflow run that the tracking store does not hold."""


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


def load_test_clips(store: FeatureStore, layout: Layout) -> HeldOutClips:
    """The test split as raw audio paths, audio hashes and true genres, in store order.

    The audio hash comes from the validated manifest, so the split's identity covers what the
    clips sound like, not only their names.
    """
    import pandas as pd

    index = store.index
    rows = index[index["split"] == "test"].drop_duplicates("track_id")
    manifest = pd.read_csv(layout.validated_manifest, dtype=str).set_index("track_id")
    missing = sorted(set(rows["track_id"].astype(str)) - set(manifest.index))
    if missing:
        raise StaleInputError(
            f"{layout.validated_manifest}: lacks test track(s) {missing[:3]} of the feature "
            "store; run `dvc repro spectrogramize`"
        )
    track_ids = tuple(rows["track_id"].astype(str))
    paths = tuple(Path(p) if Path(p).is_absolute() else layout.absolute(p) for p in rows["path"])
    return HeldOutClips(
        track_ids=track_ids,
        audio_sha256=tuple(str(manifest.at[t, "audio_sha256"]) for t in track_ids),
        paths=paths,
        genres=tuple(rows["genre"].astype(str)),
    )


def clip_predictions(
    classifier: Any, store: FeatureStore, split: str = "test"
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(track ids, y_true, y_pred)`` per clip of ``split`` from the feature path."""
    from genreflow.training.clip_metrics import clip_labels, clip_logits
    from genreflow.training.loop import predict_segments, select_device

    x, y, ids = store.split(split)
    if len(x) == 0:
        raise ValueError(f"the feature store has no {split} segments; check the validate split")
    seg_logits = predict_segments(classifier, x, device=select_device())
    clip_ids, logits = clip_logits(seg_logits, ids)
    truth_ids, truth = clip_labels(y, ids)
    if not np.array_equal(clip_ids, truth_ids):  # both are first-seen order; guard anyway
        raise AssertionError("clip order of logits and labels differs")
    return clip_ids, truth, logits.argmax(axis=1).astype(np.int64)


def aligned_correctness(
    clips: HeldOutClips, ids: np.ndarray, y_true: np.ndarray, y_pred: np.ndarray
) -> tuple[bool, ...]:
    """Per-clip correctness in the order of ``clips`` (what the paired bootstrap pairs on)."""
    by_id = {str(t): bool(a == b) for t, a, b in zip(ids, y_true, y_pred, strict=True)}
    missing = [t for t in clips.track_ids if t not in by_id]
    if missing:
        raise AssertionError(f"no prediction for test clip(s) {missing[:3]}")
    return tuple(by_id[t] for t in clips.track_ids)


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


def _check_params(params: Params) -> dict[str, str]:
    """Training sections by arch, after checking the evaluate params make sense."""
    ev = params.evaluate
    if not 0.0 < ev.promotion_alpha < 0.5:
        raise ConfigError(
            f"evaluate.promotion_alpha: {ev.promotion_alpha} is not in (0, 0.5) "
            "(the gate uses the one-sided 1 - alpha lower bound)"
        )
    if ev.bootstrap_samples < 100:
        raise ConfigError(
            f"evaluate.bootstrap_samples: {ev.bootstrap_samples} is below 100, too few for "
            "a bootstrap interval"
        )
    sections = {s: getattr(params, s).arch for s in SECTIONS}
    if len(set(sections.values())) != len(sections):
        raise ConfigError(
            f"params.yaml: train_cnn and train_lstm both train arch {sections['train_cnn']!r}; "
            "their models would overwrite each other under models/<arch>/"
        )
    return sections


def _score_robustness(
    arch: str, info: dict[str, Any], params: Params, clips: HeldOutClips, progress: bool
) -> dict[str, Any]:
    """Test clips under each ``evaluate.robustness`` perturbation, through the candidate's
    logged (served) model: accuracy and agreement with the clean prediction; logged to its run.
    """
    from genreflow.robustness.score import evaluate_robustness

    return evaluate_robustness(
        info["model_uri"],
        info["run_id"],
        clips.paths,
        clips.genres,
        params.evaluate.robustness,
        seed=params.seed,
        progress=progress,
        desc=f"robustness {arch}",
    )


def _score_candidate(
    section: str,
    arch: str,
    info: dict[str, Any],
    params: Params,
    layout: Layout,
    store: FeatureStore,
    clips: HeldOutClips,
    commit: str | None,
    progress: bool = True,
) -> tuple[Candidate, dict[str, Any]]:
    """Validation and test scores of one trained model, its confusion outputs, its candidate."""
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
    result["robustness"] = _score_robustness(arch, info, params, clips, progress)

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
        test_correct=aligned_correctness(clips, ids, y_true, y_pred),
        git_commit=run_commit or commit,
        genres=tuple(genres),
        sample_rate=meta["feature_params"].sample_rate,
    )
    return candidate, result


def evaluate_stage(params: Params, layout: Layout, progress: bool = True) -> dict[str, Any]:
    """Score, report, register, select on validation and gate on test; returns what it wrote."""
    from genreflow.evaluation.baseline import run_baseline
    from genreflow.evaluation.metrics import score_clips
    from genreflow.registry.aliases import CHAMPION_ALIAS, get_alias
    from genreflow.registry.promotion import GateSettings, register_and_promote
    from genreflow.similarity.build import evaluate_retrieval

    ev = params.evaluate
    sections = _check_params(params)
    tracking_uri = configure_mlflow(layout, params.tracking.experiment)

    # Check every candidate's run first: fail before writing anything.
    infos: dict[str, dict[str, Any]] = {}
    for section, arch in sections.items():
        info = read_run_info(layout, arch)
        if find_run(info["run_id"]) is None:
            raise MissingRunError(missing_run_message(section, arch, info["run_id"], tracking_uri))
        infos[arch] = info

    store = FeatureStore.load(layout.features_dir)
    clips = load_test_clips(store, layout)
    commit = git_commit(layout.root)
    metrics: dict[str, Any] = {}
    candidates: list[Candidate] = []
    for section, arch in sections.items():
        cand, metrics[arch] = _score_candidate(
            section, arch, infos[arch], params, layout, store, clips, commit, progress
        )
        candidates.append(cand)

    b_ids, b_true, b_pred = run_baseline(store, params.seed)
    baseline = score_clips(b_true, b_pred, store.genres, ev.bootstrap_samples, ev.bootstrap_seed)
    metrics["baseline"] = baseline.to_dict()
    write_json(layout.metrics, metrics)

    gate = GateSettings(
        margin=ev.promotion_margin,
        alpha=ev.promotion_alpha,
        samples=ev.bootstrap_samples,
        seed=ev.bootstrap_seed,
    )
    decisions = register_and_promote(
        params.tracking.registered_model,
        candidates,
        aligned_correctness(clips, b_ids, b_true, b_pred),
        clips,
        gate,
        tracking_uri,
        progress=progress,
    )
    champion = get_alias(params.tracking.registered_model, CHAMPION_ALIAS)
    promotion = {
        "registered_model": params.tracking.registered_model,
        "selection": "best validation clip accuracy, then validation macro-F1",
        "selected": next(d.arch for d in decisions if d.selected),
        "rule": decisions[0].rule,
        "promotion_margin": ev.promotion_margin,
        "promotion_alpha": ev.promotion_alpha,
        "bootstrap_samples": ev.bootstrap_samples,
        "test_split_hash": clips.split_hash,
        "test_clips": len(clips.track_ids),
        "champion_version": str(champion.version) if champion is not None else None,
        "champion_arch": (champion.tags or {}).get("arch") if champion is not None else None,
        "decisions": [d.to_dict() for d in decisions],
    }
    write_json(layout.promotion, promotion)
    now = datetime.now(UTC).isoformat(timespec="seconds")
    append_promotion_log(
        layout.promotion_log,
        [
            {
                "time": now,
                "registered_model": params.tracking.registered_model,
                "champion_after": promotion["champion_version"],
                **d.to_dict(),
            }
            for d in decisions
        ],
    )
    # Song vectors of the champion just decided: index, retrieval scores (metrics + its run).
    metrics["retrieval"] = evaluate_retrieval(params, layout, progress=progress)
    write_json(layout.metrics, metrics)
    return {"metrics": metrics, "promotion": promotion}
