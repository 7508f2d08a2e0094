"""The ``evaluate`` DVC stage: score, gate, report, index.

For each trained candidate (CNN, CRNN) it scores clip-level decisions on the validation and
test splits (:mod:`genreflow.pipeline.candidates`), then the robustness of all candidates in
one pass over the perturbed test files (:mod:`genreflow.pipeline.candidate_robustness`), and
scores the classical baseline on the same clips. Then
:func:`genreflow.registry.promotion.register_and_promote` registers both, selects one on
**validation**, and gates it on **test** with a paired bootstrap against the champion (or,
with no champion, against the baseline). The decisions go to
``reports/promotion.json`` and ``reports/promotion_log.jsonl``
(:mod:`genreflow.pipeline.promotion_report`). Last, with the champion just decided, it
rebuilds the similar-song index ``models/similarity_index/`` and scores retrieval
(:func:`genreflow.similarity.build.evaluate_retrieval`).

``reports/metrics.json`` (DVC metrics) is written once, at the end, with every score:
``<arch>``, ``baseline`` and ``retrieval``. Before any file is written the candidates' MLflow
runs are checked (:mod:`genreflow.pipeline.candidate_runs`).

This module only orchestrates; each step has its own module.
"""

from __future__ import annotations

from typing import Any

from genreflow.core.atomic import write_json
from genreflow.core.config import TRAIN_SECTIONS, ConfigError, Params
from genreflow.core.paths import Layout
from genreflow.features.store import FeatureStore
from genreflow.pipeline.candidate_robustness import sample_report, score_robustness
from genreflow.pipeline.candidate_runs import candidate_runs
from genreflow.pipeline.candidates import score_candidate
from genreflow.pipeline.held_out_clips import load_test_clips
from genreflow.pipeline.promotion_report import promotion_report, write_promotion_report
from genreflow.registry.versions import Candidate
from genreflow.tracking.runs import git_commit
from genreflow.tracking.store import configure_mlflow


def _check_params(params: Params) -> dict[str, str]:
    """Training sections by arch, after checking the evaluate params make sense.

    ``load_params`` checks all of this too; params built in code (tests, notebooks) are not
    checked on construction, and evaluate must not let two sections share ``models/<arch>/``.
    """
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
    sections = {s: getattr(params, s).arch for s in TRAIN_SECTIONS}
    if len(set(sections.values())) != len(sections):
        raise ConfigError(
            f"params.yaml: {' and '.join(TRAIN_SECTIONS)} both train arch "
            f"{sections[TRAIN_SECTIONS[0]]!r}; "
            "their models would overwrite each other under models/<arch>/"
        )
    return sections


def evaluate_stage(params: Params, layout: Layout, progress: bool = True) -> dict[str, Any]:
    """Score, gate, report, index; returns what it wrote (``metrics`` and ``promotion``)."""
    from genreflow.evaluation.baseline import run_baseline
    from genreflow.evaluation.metrics import score_clips
    from genreflow.evaluation.predict import aligned_correctness
    from genreflow.registry.aliases import CHAMPION_ALIAS, get_alias
    from genreflow.registry.promotion import GateSettings, register_and_promote
    from genreflow.similarity.build import evaluate_retrieval

    ev = params.evaluate
    name = params.tracking.registered_model
    sections = _check_params(params)
    tracking_uri = configure_mlflow(layout, params.tracking.experiment)
    infos = candidate_runs(sections, layout, tracking_uri)  # fail before writing anything

    # score
    store = FeatureStore.load(layout.features_dir)
    clips = load_test_clips(store, layout)
    commit = git_commit(layout.root)
    metrics: dict[str, Any] = {}
    candidates: list[Candidate] = []
    for section, arch in sections.items():
        cand, metrics[arch] = score_candidate(
            section, arch, infos[arch], params, layout, store, clips, commit
        )
        candidates.append(cand)
    robustness = score_robustness(infos, params, clips, progress)  # every candidate at once
    for arch, report in robustness.items():
        metrics[arch]["robustness"] = report.to_dict()
    b_ids, b_true, b_pred = run_baseline(store, params.seed)
    baseline = score_clips(b_true, b_pred, store.genres, ev.bootstrap_samples, ev.bootstrap_seed)
    metrics["baseline"] = baseline.to_dict()

    # gate
    gate = GateSettings(
        margin=ev.promotion_margin,
        alpha=ev.promotion_alpha,
        samples=ev.bootstrap_samples,
        seed=ev.bootstrap_seed,
    )
    decisions = register_and_promote(
        name,
        candidates,
        aligned_correctness(clips.track_ids, b_ids, b_true, b_pred),
        clips,
        gate,
        tracking_uri,
        progress=progress,
    )

    # report
    promotion = promotion_report(name, decisions, get_alias(name, CHAMPION_ALIAS), ev, clips)
    sample = sample_report(robustness)
    if sample is not None:  # only when sampled, so a full run's report keeps its bytes
        promotion["robustness_sample"] = sample
    write_promotion_report(layout, promotion, decisions)

    # index: the champion just decided embeds the corpus; its retrieval scores join the metrics
    metrics["retrieval"] = evaluate_retrieval(params, layout, progress=progress)
    write_json(layout.metrics, metrics)
    return {"metrics": metrics, "promotion": promotion}
