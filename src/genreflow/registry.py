"""Model registry: candidate versions, the ``champion`` alias and an auditable promotion rule.

Every evaluated candidate becomes a version of one registered model (``genre-classifier``),
tagged with where it came from (arch, git commit, run) and how it scored (test accuracy,
macro-F1, and the hash of the test split it was scored on). Aliases, not the deprecated
stages, mark what is deployed:

- ``champion``: the version serving should load (``models:/genre-classifier@champion``);
- ``previous-champion``: the version ``champion`` pointed to before the last move.

The full order of champions is kept in the registered model's ``champion_history`` tag (a
JSON list of versions), so :func:`rollback` can step back more than once.

Promotion rule: a candidate takes ``champion`` only when no champion exists, or when it beats
the champion *on the same test split* by at least ``promotion_margin`` (a tie never
promotes). A champion scored on a different split (the data changed) is re-scored on the
current test clips through its own served model — raw waveform in, so the comparison also
covers its front-end — before the comparison is made.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from genreflow.errors import GenreflowError
from genreflow.paths import Layout
from genreflow.tracking import set_tracking

CHAMPION_ALIAS = "champion"
PREVIOUS_ALIAS = "previous-champion"
HISTORY_TAG = "champion_history"
HISTORY_LIMIT = 100

# Version tag keys.
TAG_ARCH = "arch"
TAG_GIT_COMMIT = "git_commit"
TAG_RUN_ID = "run_id"
TAG_TEST_ACCURACY = "test_accuracy"
TAG_MACRO_F1 = "macro_f1"
TAG_TEST_SPLIT_HASH = "test_split_hash"
TAG_GENRES = "genres"
TAG_SAMPLE_RATE = "sample_rate"
TAG_DECISION = "promotion_decision"
TAG_REASON = "promotion_reason"
TAG_COMPARED_VERSION = "promotion_compared_with_version"
TAG_COMPARED_SCORE = "promotion_compared_with_score"

PROMOTED = "promoted"
REJECTED = "rejected"
ALREADY_CHAMPION = "already-champion"

_SCORE_TOLERANCE = 1e-9  # accuracy differences below this are ties (float noise)


class RegistryError(GenreflowError, RuntimeError):
    """A registry operation cannot be carried out; the message says why and what to do."""


# --------------------------------------------------------------------------- pure parts
def hash_track_ids(track_ids: Iterable[str]) -> str:
    """SHA-256 of the sorted, unique test track ids: equal hashes mean the same test split."""
    ids = sorted({str(t) for t in track_ids})
    return hashlib.sha256("\n".join(ids).encode()).hexdigest()


def decide_promotion(
    candidate_score: float, champion_score: float | None, margin: float
) -> tuple[bool, str]:
    """Whether a candidate takes ``champion``, and why (a sentence for humans and tags).

    Promote when there is no champion, or when ``candidate - champion >= margin`` *and* the
    candidate is strictly better (so ``margin = 0`` does not promote ties).
    """
    if not math.isfinite(candidate_score):
        return False, f"candidate score {candidate_score} is not a finite number"
    if champion_score is None:
        return True, f"no champion exists; candidate scores {candidate_score:.4f}"
    gain = candidate_score - champion_score
    if gain > _SCORE_TOLERANCE and gain >= margin - _SCORE_TOLERANCE:
        return True, (
            f"candidate {candidate_score:.4f} beats champion {champion_score:.4f} by "
            f"{gain:+.4f} >= margin {margin:.4f}"
        )
    return False, (
        f"candidate {candidate_score:.4f} does not beat champion {champion_score:.4f} by the "
        f"margin {margin:.4f} (difference {gain:+.4f})"
    )


@dataclass(frozen=True)
class Candidate:
    """A trained model ready for registration, with its scores on the current test split."""

    arch: str
    run_id: str
    model_uri: str
    accuracy: float
    macro_f1: float
    git_commit: str | None = None
    genres: tuple[str, ...] = ()
    sample_rate: int | None = None


@dataclass(frozen=True)
class HeldOutClips:
    """The current test split as raw audio: what a champion from older data is re-scored on."""

    track_ids: tuple[str, ...]
    paths: tuple[Path, ...]
    genres: tuple[str, ...]  # true genre name per clip

    @property
    def split_hash(self) -> str:
        return hash_track_ids(self.track_ids)


@dataclass
class Decision:
    """One candidate's promotion decision, as written to ``reports/promotion.json``."""

    arch: str
    version: str
    run_id: str
    candidate_accuracy: float
    candidate_macro_f1: float
    champion_version: str | None
    champion_accuracy: float | None
    champion_score_source: str | None  # "tag" (same split) | "rescored" | "candidate" | None
    margin: float
    decision: str
    promoted: bool
    reason: str
    test_split_hash: str
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# --------------------------------------------------------------------------- registry access
def _client() -> Any:
    from mlflow.tracking import MlflowClient

    return MlflowClient()


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

    client = _client()
    try:
        versions = client.search_model_versions(filter_string=f"name = '{name}'")
    except MlflowException:
        return None
    model_id = _model_id(model_uri)
    for mv in versions:
        if mv.source == model_uri or (model_id and getattr(mv, "model_id", None) == model_id):
            return mv
    return None


def register_candidate(name: str, candidate: Candidate, split_hash: str) -> Any:
    """Register (or find) ``candidate`` as a version of ``name`` and tag it with its scores."""
    import mlflow

    tags = {
        TAG_ARCH: candidate.arch,
        TAG_RUN_ID: candidate.run_id,
        TAG_TEST_ACCURACY: f"{candidate.accuracy:.6f}",
        TAG_MACRO_F1: f"{candidate.macro_f1:.6f}",
        TAG_TEST_SPLIT_HASH: split_hash,
        TAG_GIT_COMMIT: candidate.git_commit or "unknown",
    }
    if candidate.genres:
        tags[TAG_GENRES] = json.dumps(list(candidate.genres))
    if candidate.sample_rate:
        tags[TAG_SAMPLE_RATE] = str(candidate.sample_rate)
    existing = find_version(name, candidate.model_uri)
    if existing is None:
        mv = mlflow.register_model(candidate.model_uri, name, tags=tags)
    else:
        mv = existing
        client = _client()
        for key, value in tags.items():
            client.set_model_version_tag(name, str(mv.version), key, value)
    return _client().get_model_version(name, str(mv.version))


def get_alias(name: str, alias: str) -> Any | None:
    """The version ``alias`` points to, or ``None`` (no such alias or no such model)."""
    from mlflow.exceptions import MlflowException

    try:
        return _client().get_model_version_by_alias(name, alias)
    except MlflowException:
        return None


def _history(name: str) -> list[str]:
    from mlflow.exceptions import MlflowException

    try:
        raw = _client().get_registered_model(name).tags.get(HISTORY_TAG, "[]")
    except MlflowException:
        return []
    try:
        return [str(v) for v in json.loads(raw)]
    except (ValueError, TypeError):
        return []


def _set_history(name: str, history: Sequence[str]) -> None:
    kept = list(history)[-HISTORY_LIMIT:]
    _client().set_registered_model_tag(name, HISTORY_TAG, json.dumps(kept))


def _move_champion(name: str, version: str) -> str | None:
    """Point ``champion`` at ``version``; the old holder becomes ``previous-champion``."""
    client = _client()
    old = get_alias(name, CHAMPION_ALIAS)
    old_version = str(old.version) if old is not None else None
    if old_version == str(version):
        return old_version
    client.set_registered_model_alias(name, CHAMPION_ALIAS, str(version))
    if old_version is not None:
        client.set_registered_model_alias(name, PREVIOUS_ALIAS, old_version)
    history = _history(name)
    if not history and old_version is not None:
        history = [old_version]
    _set_history(name, [*history, str(version)])
    return old_version


def _tag_decision(name: str, decision: Decision) -> None:
    client = _client()
    tags = {
        TAG_DECISION: decision.decision,
        TAG_REASON: decision.reason,
        TAG_COMPARED_VERSION: decision.champion_version or "none",
        TAG_COMPARED_SCORE: (
            f"{decision.champion_accuracy:.6f}"
            if decision.champion_accuracy is not None
            else "none"
        ),
    }
    for key, value in tags.items():
        client.set_model_version_tag(name, decision.version, key, value)


# --------------------------------------------------------------------------- champion scoring
def score_waveform_model(
    model: Any,
    clips: HeldOutClips,
    model_genres: Sequence[str],
    sample_rate: int,
    progress: bool = True,
) -> tuple[float, list[str]]:
    """Clip accuracy of a served (waveform -> logits) model on raw test audio.

    Predictions are compared by genre *name*, so a champion trained with another label order
    is still scored correctly. Returns ``(accuracy, notes)``.
    """
    import torch
    from tqdm import tqdm

    from genreflow.audio import load_mono

    if not clips.paths:
        raise RegistryError("cannot re-score the champion: the test split has no clips")
    notes: list[str] = []
    failed: list[str] = []
    correct = 0
    with torch.no_grad():
        for path, truth in tqdm(
            list(zip(clips.paths, clips.genres, strict=True)),
            desc="re-score champion",
            unit="clip",
            disable=not progress,
        ):
            wave = load_mono(path, sample_rate).unsqueeze(0)
            try:
                logits = model(wave)
            except Exception as exc:  # an exported graph rejects shapes it was not built for
                failed.append(f"{path}: {type(exc).__name__}: {str(exc)[:200]}")
                continue
            pred = int(np.asarray(logits.detach().cpu().numpy()).argmax(axis=1)[0])
            correct += int(pred < len(model_genres) and model_genres[pred] == truth)
    if failed:
        notes.append(
            f"the champion could not score {len(failed)} clip(s), counted as wrong; "
            f"first: {failed[0]}"
        )
    return correct / len(clips.paths), notes


def champion_score(
    name: str,
    champion: Any,
    clips: HeldOutClips,
    default_genres: Sequence[str],
    default_sample_rate: int,
    progress: bool = True,
) -> tuple[float, str, list[str]]:
    """The champion's accuracy on the current test split: ``(score, source, notes)``.

    ``source`` is ``"tag"`` when the champion was scored on this very split (its
    ``test_split_hash`` tag matches) and ``"rescored"`` when its served model had to be run
    on the current test clips.
    """
    import mlflow

    tags = champion.tags or {}
    if tags.get(TAG_TEST_SPLIT_HASH) == clips.split_hash and TAG_TEST_ACCURACY in tags:
        return float(tags[TAG_TEST_ACCURACY]), "tag", []
    genres = json.loads(tags[TAG_GENRES]) if TAG_GENRES in tags else list(default_genres)
    sample_rate = int(tags.get(TAG_SAMPLE_RATE, default_sample_rate))
    model = mlflow.pytorch.load_model(f"models:/{name}@{CHAMPION_ALIAS}")
    score, notes = score_waveform_model(model, clips, genres, sample_rate, progress)
    notes.append(
        f"champion v{str(champion.version)} was scored on another test split "
        f"({tags.get(TAG_TEST_SPLIT_HASH, 'unknown')[:12]}); re-scored on the current one"
    )
    return score, "rescored", notes


# --------------------------------------------------------------------------- evaluate's entry
def register_and_promote(
    name: str,
    candidates: Sequence[Candidate],
    clips: HeldOutClips,
    margin: float,
    default_genres: Sequence[str],
    default_sample_rate: int,
    progress: bool = True,
) -> list[Decision]:
    """Register every candidate, then decide promotion best-first; returns every decision.

    Candidates are considered in descending test accuracy, each against the champion of the
    moment, so at most the best candidate is promoted and the others record why not.
    """
    split_hash = clips.split_hash
    versions = {c.arch: register_candidate(name, c, split_hash) for c in candidates}

    champion = get_alias(name, CHAMPION_ALIAS)
    champ_version: str | None = str(champion.version) if champion is not None else None
    champ_score: float | None = None
    champ_source: str | None = None
    notes: list[str] = []
    champ_error: str | None = None
    if champion is not None:
        mine = [c for c in candidates if str(versions[c.arch].version) == str(champion.version)]
        if mine:
            champ_score, champ_source = mine[0].accuracy, "candidate"
        else:
            try:
                champ_score, champ_source, notes = champion_score(
                    name, champion, clips, default_genres, default_sample_rate, progress
                )
            except Exception as exc:  # unloadable champion: never replace it blindly
                champ_error = (
                    f"champion v{champ_version} could not be scored on the current test split "
                    f"({type(exc).__name__}: {str(exc)[:300]}); not promoting automatically, "
                    "use `promote` after reviewing"
                )

    decisions: list[Decision] = []
    for cand in sorted(candidates, key=lambda c: (-c.accuracy, -c.macro_f1, c.arch)):
        mv = versions[cand.arch]
        if str(mv.version) == champ_version:
            promoted, decision = False, ALREADY_CHAMPION
            reason = f"version {str(mv.version)} already holds @{CHAMPION_ALIAS}"
        elif champ_error is not None:
            promoted, decision, reason = False, REJECTED, champ_error
        else:
            promoted, reason = decide_promotion(cand.accuracy, champ_score, margin)
            decision = PROMOTED if promoted else REJECTED
        record = Decision(
            arch=cand.arch,
            version=str(mv.version),
            run_id=cand.run_id,
            candidate_accuracy=cand.accuracy,
            candidate_macro_f1=cand.macro_f1,
            champion_version=champ_version,
            champion_accuracy=champ_score,
            champion_score_source=champ_source,
            margin=margin,
            decision=decision,
            promoted=promoted,
            reason=reason,
            test_split_hash=split_hash,
            notes=list(notes),
        )
        _tag_decision(name, record)
        decisions.append(record)
        if promoted:
            _move_champion(name, str(mv.version))
            champ_version, champ_score, champ_source = str(mv.version), cand.accuracy, "candidate"
            notes = []
    return decisions


# --------------------------------------------------------------------------- manual operations
def promote(
    name: str, version: str | int, layout: Layout, reason: str = "manual"
) -> dict[str, Any]:
    """Force ``champion`` onto ``version`` (e.g. after a human review); returns what changed.

    The previous holder becomes ``previous-champion`` and the move is appended to the
    ``champion_history`` tag, so :func:`rollback` can undo it.
    """
    set_tracking(layout)
    client = _client()
    mv = client.get_model_version(name, str(version))  # raises if it does not exist
    before = get_alias(name, CHAMPION_ALIAS)
    before_version = str(before.version) if before is not None else None
    if before_version == str(mv.version):
        return {
            "model": name,
            "champion": before_version,
            "changed": False,
            "previous_champion": _alias_version(name, PREVIOUS_ALIAS),
        }
    _move_champion(name, str(mv.version))
    client.set_model_version_tag(name, str(mv.version), TAG_DECISION, PROMOTED)
    client.set_model_version_tag(name, str(mv.version), TAG_REASON, f"manual promotion: {reason}")
    return {
        "model": name,
        "champion": str(mv.version),
        "previous_champion": before_version,
        "changed": True,
    }


def rollback(name: str, layout: Layout) -> dict[str, Any]:
    """Move ``champion`` back to the version that held it before the current one.

    The registered model's ``champion_history`` tag lists champions in promotion order; the
    current one is dropped from its end, the new last entry becomes ``champion`` and the one
    before it (if any) ``previous-champion``. The rolled-back version is tagged
    ``promotion_decision=rolled-back`` so a later evaluate run does not mistake it for a
    rejected candidate. Raises :class:`RegistryError` when there is nothing to roll back to.
    """
    set_tracking(layout)
    client = _client()
    current = get_alias(name, CHAMPION_ALIAS)
    if current is None:
        raise RegistryError(f"model {name!r} has no @{CHAMPION_ALIAS}; nothing to roll back")
    history = _history(name)
    while history and history[-1] == str(current.version):
        history.pop()
    if not history:
        prev = get_alias(name, PREVIOUS_ALIAS)
        if prev is None or str(prev.version) == str(current.version):
            raise RegistryError(
                f"model {name!r}: no earlier champion is recorded (no {HISTORY_TAG} entry and "
                f"no @{PREVIOUS_ALIAS}); promote a version explicitly instead"
            )
        history = [str(prev.version)]
    target = history[-1]
    client.set_registered_model_alias(name, CHAMPION_ALIAS, target)
    if len(history) >= 2:
        client.set_registered_model_alias(name, PREVIOUS_ALIAS, history[-2])
    elif get_alias(name, PREVIOUS_ALIAS) is not None:
        client.delete_registered_model_alias(name, PREVIOUS_ALIAS)
    _set_history(name, history)
    client.set_model_version_tag(name, str(current.version), TAG_DECISION, "rolled-back")
    client.set_model_version_tag(
        name, str(current.version), TAG_REASON, f"rolled back to version {target}"
    )
    return {
        "model": name,
        "champion": target,
        "rolled_back_from": str(current.version),
        "previous_champion": history[-2] if len(history) >= 2 else None,
    }


def _alias_version(name: str, alias: str) -> str | None:
    mv = get_alias(name, alias)
    return str(mv.version) if mv is not None else None


def describe(name: str, layout: Layout) -> dict[str, Any]:
    """Every version of ``name`` with its aliases and tags (for ``genreflow registry show``)."""
    set_tracking(layout)
    client = _client()
    versions = client.search_model_versions(filter_string=f"name = '{name}'")
    return {
        "model": name,
        "champion": _alias_version(name, CHAMPION_ALIAS),
        "previous_champion": _alias_version(name, PREVIOUS_ALIAS),
        "history": _history(name),
        "versions": [
            {"version": str(mv.version), "aliases": list(mv.aliases or []), "tags": dict(mv.tags)}
            for mv in sorted(versions, key=lambda v: int(v.version))
        ],
    }
