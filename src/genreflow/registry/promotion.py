"""What ``evaluate`` calls: register a run's candidates, select one, gate it, move the alias.

1. Every candidate becomes a version of the registered model, tagged with its scores.
2. **Selection** on validation only (:func:`~genreflow.registry.decision.select_candidate`);
   the other candidates are recorded as ``not-selected``.
3. **The gate** (:func:`~genreflow.registry.decision.gate`) against a reference scored on the
   same test clips: the champion, re-scored through its served model, or, with no champion,
   the classical baseline of this run (the floor).
4. The champion is compared only when its logged train/val tracks share no track with the
   current test split; a rolled-back version is never promoted automatically. Either case is
   ``blocked``, with the reason.
5. Read-decide-write runs under :func:`~genreflow.registry.aliases.promotion_lock`, and the
   alias is re-read just before it moves: if another evaluate moved it meanwhile, the
   decision is made again against the new champion.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from genreflow.registry import aliases, decision, versions
from genreflow.registry.versions import Candidate

PROMOTED = "promoted"
REJECTED = "rejected"
BLOCKED = "blocked"
NOT_SELECTED = "not-selected"
ALREADY_CHAMPION = "already-champion"
MAX_ATTEMPTS = 5


@dataclass(frozen=True)
class HeldOutClips:
    """The current test split: identities, raw audio and truth, in one fixed clip order."""

    track_ids: tuple[str, ...]
    audio_sha256: tuple[str, ...]
    paths: tuple[Path, ...]
    genres: tuple[str, ...]  # true genre name per clip

    @property
    def pairs(self) -> list[tuple[str, str]]:
        return list(zip(self.track_ids, self.audio_sha256, strict=True))

    @property
    def split_hash(self) -> str:
        return decision.split_hash(self.pairs)


@dataclass(frozen=True)
class GateSettings:
    """``evaluate`` params of the gate."""

    margin: float
    alpha: float
    samples: int
    seed: int


@dataclass
class Decision:
    """One candidate's decision, as written to ``reports/promotion.json`` and version tags."""

    arch: str
    version: str
    run_id: str
    selected: bool
    val_accuracy: float
    val_macro_f1: float
    test_accuracy: float
    test_macro_f1: float
    decision: str
    promoted: bool
    reason: str
    test_split_hash: str
    n_clips: int
    alpha: float
    margin: float
    rule: str = ""
    reference: str | None = None  # "champion" | "baseline" | None
    reference_version: str | None = None
    evidence: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def content(self) -> dict[str, Any]:
        """The decision as DVC outputs hold it (``promotion.json``, the decision log): all but
        ``run_id``. A run id is random provenance; MLflow keeps it (the version's source run,
        its ``run_id`` tag and the registered model's ``decision_history``)."""
        out = self.to_dict()
        del out["run_id"]
        return out

    def version_tags(self) -> dict[str, str]:
        """The decision as version tags (strings), so the Models tab shows the evidence."""
        ev = self.evidence or {}
        p = versions.DECISION_PREFIX
        tags = {
            f"{p}decision": self.decision,
            f"{p}reason": self.reason[:4000],
            f"{p}rule": self.rule or "none",
            f"{p}alpha": f"{self.alpha:g}",
            f"{p}margin": f"{self.margin:g}",
            f"{p}n_clips": str(self.n_clips),
            f"{p}reference": self.reference or "none",
            f"{p}reference_version": self.reference_version or "none",
        }
        if ev:
            tags[f"{p}difference"] = f"{ev['difference']:.6f}"
            tags[f"{p}interval"] = f"[{ev['interval'][0]:.6f}, {ev['interval'][1]:.6f}]"
            tags[f"{p}p_better"] = f"{ev['p_better']:.4f}"
        return tags

    def log_entry(self, time: str, champion_after: str | None) -> dict[str, Any]:
        """A compact record for the registered model's ``decision_history``."""
        ev = self.evidence or {}
        return {
            "time": time,
            "version": self.version,
            "run_id": self.run_id,
            "arch": self.arch,
            "decision": self.decision,
            "reference": self.reference,
            "reference_version": self.reference_version,
            "difference": ev.get("difference"),
            "interval": ev.get("interval"),
            "p_better": ev.get("p_better"),
            "n_clips": self.n_clips,
            "test_split_hash": self.test_split_hash[:16],
            "champion_after": champion_after,
        }


def _base(cand: Candidate, mv: Any, clips: HeldOutClips, gs: GateSettings, selected: bool):
    return Decision(
        arch=cand.arch,
        version=str(mv.version),
        run_id=cand.run_id,
        selected=selected,
        val_accuracy=cand.val_accuracy,
        val_macro_f1=cand.val_macro_f1,
        test_accuracy=cand.test_accuracy,
        test_macro_f1=cand.test_macro_f1,
        decision=REJECTED,
        promoted=False,
        reason="",
        test_split_hash=clips.split_hash,
        n_clips=len(clips.track_ids),
        alpha=gs.alpha,
        margin=gs.margin,
    )


def _gated(base: Decision, cand, reference_correct, reference: str, gs: GateSettings) -> Decision:
    evidence = decision.paired_bootstrap(
        cand.test_correct, reference_correct, gs.samples, gs.seed, gs.alpha
    )
    verdict = decision.gate(evidence, gs.margin, reference)
    return replace(
        base,
        decision=PROMOTED if verdict.promote else REJECTED,
        promoted=verdict.promote,
        reason=verdict.reason,
        rule=verdict.rule,
        evidence=evidence.to_dict(),
    )


class _Blocked(Exception):
    """The champion cannot be compared fairly; the message says why."""


def _champion_correctness(
    name: str,
    champion: Any,
    clips: HeldOutClips,
    candidates: Sequence[Candidate],
    versions_by_arch: dict[str, Any],
    progress: bool,
) -> tuple[tuple[bool, ...], list[str]]:
    """The champion's per-clip correctness on ``clips`` and notes; :class:`_Blocked` if unfair."""
    from genreflow.registry.rescore import served_correctness
    from genreflow.tracking.training_tracks import load_training_tracks

    version = str(champion.version)
    for cand in candidates:  # the champion is one of this run's models: no re-score needed
        if str(versions_by_arch[cand.arch].version) == version:
            return cand.test_correct, []
    run_id = (champion.tags or {}).get(versions.TAG_RUN_ID) or getattr(champion, "run_id", None)
    tracks = load_training_tracks(run_id) if run_id else None
    if tracks is None:
        raise _Blocked(  # no run id here: the reason lands in DVC outputs (content only)
            f"champion v{version} logged no train/val track list on its training run, so it "
            "cannot be re-scored without risking its own training clips; compare by hand and "
            "use `genreflow promote`"
        )
    seen = decision.seen_before(clips.pairs, tracks)
    if seen:
        raise _Blocked(
            f"{len(seen)} of the {len(clips.track_ids)} test tracks were in champion "
            f"v{version}'s training or validation data (e.g. {', '.join(seen[:3])}); a "
            "re-score would flatter it, so there is no automatic promotion"
        )
    try:
        correct, notes = served_correctness(
            f"models:/{name}/{version}", clips.paths, clips.genres, progress
        )
    except Exception as exc:  # an unloadable champion is never replaced blindly
        raise _Blocked(
            f"champion v{version} could not be scored on the current test split "
            f"({type(exc).__name__}: {str(exc)[:300]}); use `genreflow promote` after review"
        ) from exc
    return correct, [f"champion v{version} re-scored on the current test clips", *notes]


def decide(
    name: str,
    chosen: Candidate,
    candidates: Sequence[Candidate],
    versions_by_arch: dict[str, Any],
    baseline_correct: Sequence[bool],
    clips: HeldOutClips,
    gs: GateSettings,
    progress: bool = True,
) -> Decision:
    """The selected candidate's decision against the champion of this moment (or the floor)."""
    mv = versions_by_arch[chosen.arch]
    base = _base(chosen, mv, clips, gs, selected=True)
    champion = aliases.get_alias(name, aliases.CHAMPION_ALIAS)
    if champion is not None and str(champion.version) == base.version:
        return replace(
            base,
            decision=ALREADY_CHAMPION,
            reason=f"version {base.version} already holds @{aliases.CHAMPION_ALIAS}",
            reference="champion",
            reference_version=base.version,
        )
    if aliases.is_rolled_back(mv):
        return replace(
            base,
            decision=BLOCKED,
            reason=(
                f"version {base.version} was rolled back by hand; automatic promotion never "
                f"picks it again (`genreflow promote {base.version}` can)"
            ),
        )
    if champion is None:  # the floor: beat the baseline of this very run
        base = replace(base, reference="baseline")
        return _gated(base, chosen, baseline_correct, "baseline", gs)
    base = replace(base, reference="champion", reference_version=str(champion.version))
    try:
        reference, notes = _champion_correctness(
            name, champion, clips, candidates, versions_by_arch, progress
        )
    except _Blocked as blocked:
        return replace(base, decision=BLOCKED, reason=str(blocked))
    gated = _gated(base, chosen, reference, f"champion v{champion.version}", gs)
    return replace(gated, notes=notes)


def _not_selected(cand: Candidate, mv: Any, chosen: Candidate, clips, gs) -> Decision:
    return replace(
        _base(cand, mv, clips, gs, selected=False),
        decision=NOT_SELECTED,
        reason=(
            f"{chosen.arch} was selected on validation (clip accuracy "
            f"{chosen.val_accuracy:.4f}, macro-F1 {chosen.val_macro_f1:.4f} against "
            f"{cand.val_accuracy:.4f}, {cand.val_macro_f1:.4f}); test scores are not used to choose"
        ),
    )


def _decide_and_move(
    name: str,
    chosen: Candidate,
    candidates: Sequence[Candidate],
    versions_by_arch: dict[str, Any],
    baseline_correct: Sequence[bool],
    clips: HeldOutClips,
    gs: GateSettings,
    progress: bool,
) -> Decision:
    """Decide; if promoting, re-read the alias and decide again when someone else moved it."""
    for _ in range(MAX_ATTEMPTS):
        before = aliases.alias_version(name, aliases.CHAMPION_ALIAS)
        made = decide(
            name, chosen, candidates, versions_by_arch, baseline_correct, clips, gs, progress
        )
        if not made.promoted:
            return made
        if aliases.alias_version(name, aliases.CHAMPION_ALIAS) == before:
            aliases.move_champion(name, made.version)
            return made
    mv = versions_by_arch[chosen.arch]
    return replace(
        _base(chosen, mv, clips, gs, selected=True),
        decision=BLOCKED,
        reason=(
            f"@{aliases.CHAMPION_ALIAS} moved {MAX_ATTEMPTS} times while deciding; re-run evaluate"
        ),
    )


def register_and_promote(
    name: str,
    candidates: Sequence[Candidate],
    baseline_correct: Sequence[bool],
    clips: HeldOutClips,
    gs: GateSettings,
    tracking_uri: str,
    progress: bool = True,
) -> list[Decision]:
    """Register every candidate, select one on validation, gate it; returns every decision.

    The selected candidate's decision comes first. Every decision is tagged on its version
    (with ``promotion_decided_at``, when) and appended to the registered model's
    ``decision_history`` (with the time and the candidate's run id): the provenance that the
    content-only DVC outputs leave out lives there.
    """
    if not candidates:
        raise aliases.RegistryError("no candidates to register")
    split = clips.split_hash
    by_arch = {c.arch: versions.register_candidate(name, c, split) for c in candidates}
    picked = decision.select_candidate(
        [decision.ValidationScore(c.arch, c.val_accuracy, c.val_macro_f1) for c in candidates]
    )
    chosen = next(c for c in candidates if c.arch == picked.name)
    with aliases.promotion_lock(tracking_uri, name):
        made = [
            _decide_and_move(
                name, chosen, candidates, by_arch, baseline_correct, clips, gs, progress
            )
        ]
        made += [
            _not_selected(c, by_arch[c.arch], chosen, clips, gs)
            for c in candidates
            if c is not chosen
        ]
        champion_after = aliases.alias_version(name, aliases.CHAMPION_ALIAS)
        stamp = aliases.now()
        for d in made:
            decided = {versions.TAG_DECIDED_AT: stamp}
            versions.tag_version(name, d.version, {**d.version_tags(), **decided})
            aliases.append_decision(name, d.log_entry(stamp, champion_after))
    return made
