"""Registered versions: one per trained candidate, tagged with where it came from and how it
scored, so the Models tab of the MLflow UI answers "why is this the champion?" on its own."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

# Version tag keys.
TAG_ARCH = "arch"
TAG_GIT_COMMIT = "git_commit"
TAG_RUN_ID = "run_id"
TAG_VAL_ACCURACY = "val_accuracy"
TAG_VAL_MACRO_F1 = "val_macro_f1"
TAG_TEST_ACCURACY = "test_accuracy"
TAG_MACRO_F1 = "macro_f1"
TAG_TEST_SPLIT_HASH = "test_split_hash"
TAG_GENRES = "genres"
TAG_SAMPLE_RATE = "sample_rate"
DECISION_PREFIX = "promotion_"
TAG_DECIDED_AT = f"{DECISION_PREFIX}decided_at"  # when the latest decision was made (UTC)


@dataclass(frozen=True)
class Candidate:
    """A trained model ready for registration, with its validation and test scores."""

    arch: str
    run_id: str
    model_uri: str
    val_accuracy: float
    val_macro_f1: float
    test_accuracy: float
    test_macro_f1: float
    test_correct: tuple[bool, ...]  # per test clip, in the order of the HeldOutClips
    git_commit: str | None = None
    genres: tuple[str, ...] = ()
    sample_rate: int | None = None


def _model_id(model_uri: str) -> str | None:
    """``models:/m-abc`` -> ``m-abc`` (MLflow 3 logged-model URIs); else ``None``."""
    prefix = "models:/"
    if model_uri.startswith(prefix):
        rest = model_uri[len(prefix) :]
        if "/" not in rest and "@" not in rest:
            return rest
    return None


def find_version(name: str, model_uri: str) -> Any | None:
    """The existing version of ``name`` made from ``model_uri`` (so re-runs do not duplicate)."""
    from mlflow.exceptions import MlflowException

    from genreflow.registry.aliases import client

    try:
        versions = client().search_model_versions(filter_string=f"name = '{name}'")
    except MlflowException:
        return None
    model_id = _model_id(model_uri)
    for mv in versions:
        if mv.source == model_uri or (model_id and getattr(mv, "model_id", None) == model_id):
            return mv
    return None


def candidate_tags(candidate: Candidate, split_hash: str) -> dict[str, str]:
    tags = {
        TAG_ARCH: candidate.arch,
        TAG_RUN_ID: candidate.run_id,
        TAG_VAL_ACCURACY: f"{candidate.val_accuracy:.6f}",
        TAG_VAL_MACRO_F1: f"{candidate.val_macro_f1:.6f}",
        TAG_TEST_ACCURACY: f"{candidate.test_accuracy:.6f}",
        TAG_MACRO_F1: f"{candidate.test_macro_f1:.6f}",
        TAG_TEST_SPLIT_HASH: split_hash,
        TAG_GIT_COMMIT: candidate.git_commit or "unknown",
    }
    if candidate.genres:
        tags[TAG_GENRES] = json.dumps(list(candidate.genres))
    if candidate.sample_rate:
        tags[TAG_SAMPLE_RATE] = str(candidate.sample_rate)
    return tags


def register_candidate(name: str, candidate: Candidate, split_hash: str) -> Any:
    """Register (or find) ``candidate`` as a version of ``name`` and tag it with its scores."""
    import mlflow

    from genreflow.registry.aliases import client

    tags = candidate_tags(candidate, split_hash)
    existing = find_version(name, candidate.model_uri)
    if existing is None:
        mv = mlflow.register_model(candidate.model_uri, name, tags=tags)
    else:
        mv = existing
        for key, value in tags.items():
            client().set_model_version_tag(name, str(mv.version), key, value)
    return client().get_model_version(name, str(mv.version))


def tag_version(name: str, version: str, tags: dict[str, str]) -> None:
    from genreflow.registry.aliases import client

    c = client()
    for key, value in tags.items():
        c.set_model_version_tag(name, version, key, value)
