"""Every candidate's robustness on the same perturbed test files, in one pass.

Robustness goes through each candidate's logged (served) model on real files: the test clips
under each ``evaluate.robustness`` perturbation. Scored candidate by candidate, every clip was
re-encoded and re-decoded for each model, and the encoders cost as much as the forwards; here
the clips are encoded and decoded once and every candidate scores them
(:func:`genreflow.robustness.score.score_models`). Each report is logged into its model's
*training* run and becomes ``<arch>.robustness`` in ``reports/metrics.json``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from genreflow.core.config import Params
from genreflow.registry.promotion import HeldOutClips

SAMPLE_RULE = (
    "evaluate.robustness.max_clips test clips, genre-stratified: each genre's share in "
    "proportion (largest remainders), evenly spaced over its clips sorted by track id"
)


def score_robustness(
    infos: Mapping[str, Mapping[str, Any]],
    params: Params,
    clips: HeldOutClips,
    progress: bool = True,
) -> dict[str, Any]:
    """``{arch: report}`` (:class:`~genreflow.robustness.score.RobustnessReport`) of every
    candidate in ``infos`` (arch -> :func:`~genreflow.pipeline.candidate_runs.candidate_run`),
    scored together on ``clips`` and logged to each training run."""
    from genreflow.robustness.score import evaluate_robustness

    return evaluate_robustness(
        {arch: (info["model_uri"], info["run_id"]) for arch, info in infos.items()},
        clips.paths,
        clips.genres,
        params.evaluate.robustness,
        seed=params.seed,
        progress=progress,
        track_ids=clips.track_ids,
    )


def sample_report(reports: Mapping[str, Any]) -> dict[str, Any] | None:
    """What ``promotion.json`` records of a robustness sample (``None`` when every test clip
    was scored): the rule, how many clips of how many, and their track ids."""
    first = next(iter(reports.values()), None)
    if first is None or not first.sampled:
        return None
    return {
        "rule": SAMPLE_RULE,
        "n_clips": first.n_clips,
        "n_test_clips": first.population,
        "track_ids": list(first.sample),
    }
