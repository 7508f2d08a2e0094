"""The promotion rule as pure functions: evidence in, decision out, no MLflow and no I/O.

Why a paired bootstrap: the champion and the candidate are scored on the *same* test clips,
so their errors are correlated (both miss the hard clips). Resampling clips and moving both
models' correctness together measures the uncertainty of the *difference* directly; comparing
two point estimates with a margin (the old rule) promoted a statistically equal candidate in
about 40% of evaluations.

The rule: promote only when the one-sided ``1 - alpha`` lower bound of
``accuracy(candidate) - accuracy(reference)`` exceeds ``margin``. The reference is the current
champion or, when there is none, the classical baseline scored in the same run (the floor).
Selection between a run's candidates happens before this, on validation scores only: the test
split is used for reporting and for this gate, never for choosing.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from genreflow.evaluation.bootstrap import resampled_means


@dataclass(frozen=True)
class PairedEvidence:
    """What the paired bootstrap says about ``candidate - reference`` accuracy."""

    n_clips: int
    candidate_accuracy: float
    reference_accuracy: float
    difference: float  # observed candidate - reference accuracy
    lower_bound: float  # one-sided (1 - alpha) lower bound of the difference
    interval: tuple[float, float]  # (alpha, 1 - alpha) percentiles of the resampled difference
    p_better: float  # share of resamples where the candidate is strictly better
    alpha: float
    samples: int

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["interval"] = list(self.interval)
        return out


@dataclass(frozen=True)
class Verdict:
    """Whether the gate opens, the rule applied, and a sentence saying why."""

    promote: bool
    rule: str
    reason: str


def paired_bootstrap(
    candidate_correct: Sequence[bool] | np.ndarray,
    reference_correct: Sequence[bool] | np.ndarray,
    samples: int,
    seed: int,
    alpha: float,
) -> PairedEvidence:
    """Resample test clips with replacement; both models' correctness moves together.

    ``candidate_correct[i]`` and ``reference_correct[i]`` say whether each model got clip ``i``
    right, so the arrays must be aligned clip by clip.
    """
    cand = np.asarray(candidate_correct, dtype=bool)
    ref = np.asarray(reference_correct, dtype=bool)
    if cand.shape != ref.shape or cand.ndim != 1:
        raise ValueError(
            f"paired bootstrap needs two aligned 1-d correctness arrays, got shapes "
            f"{cand.shape} and {ref.shape}"
        )
    n = cand.size
    if n == 0:
        raise ValueError("paired bootstrap needs at least one test clip")
    if samples < 1:
        raise ValueError(f"paired bootstrap needs samples >= 1, got {samples}")
    if not 0.0 < alpha < 0.5:
        raise ValueError(f"alpha must be in (0, 0.5), got {alpha}")
    per_clip = cand.astype(np.int8) - ref.astype(np.int8)  # -1, 0 or +1 per clip
    diffs = resampled_means(per_clip, samples, seed)  # clips resampled, both models together
    low, high = np.quantile(diffs, [alpha, 1.0 - alpha])
    return PairedEvidence(
        n_clips=int(n),
        candidate_accuracy=float(cand.mean()),
        reference_accuracy=float(ref.mean()),
        difference=float(per_clip.mean()),
        lower_bound=float(low),
        interval=(float(low), float(high)),
        p_better=float((diffs > 0).mean()),
        alpha=float(alpha),
        samples=int(samples),
    )


def rule_text(reference: str, alpha: float, margin: float) -> str:
    """The rule in words, as recorded with every decision."""
    return (
        f"promote iff the one-sided {1 - alpha:.0%} paired-bootstrap lower bound of "
        f"accuracy(candidate) - accuracy({reference}) on the same test clips > {margin:g}"
    )


def gate(evidence: PairedEvidence, margin: float, reference: str) -> Verdict:
    """Open the gate only when the lower bound of the difference clears ``margin``."""
    rule = rule_text(reference, evidence.alpha, margin)
    summary = (
        f"candidate {evidence.candidate_accuracy:.4f} vs {reference} "
        f"{evidence.reference_accuracy:.4f} on {evidence.n_clips} clips: difference "
        f"{evidence.difference:+.4f}, {1 - evidence.alpha:.0%} lower bound "
        f"{evidence.lower_bound:+.4f}, P(candidate better) {evidence.p_better:.3f}"
    )
    if evidence.lower_bound > margin:
        return Verdict(True, rule, f"{summary} > margin {margin:g}")
    return Verdict(False, rule, f"{summary} does not clear margin {margin:g}")


@dataclass(frozen=True)
class ValidationScore:
    """A candidate's clip-level scores on the validation split (what selection may read)."""

    name: str
    accuracy: float
    macro_f1: float


def select_candidate(scores: Sequence[ValidationScore]) -> ValidationScore:
    """The run's candidate to put through the gate: best validation clip accuracy, then
    validation macro-F1, then name (so the choice is deterministic). Never test scores."""
    if not scores:
        raise ValueError("no candidates to select from")
    return min(scores, key=lambda s: (-s.accuracy, -s.macro_f1, s.name))


# --------------------------------------------------------------------------- data identity
def split_hash(tracks: Iterable[tuple[str, str]]) -> str:
    """SHA-256 over the sorted, unique ``(track id, audio content hash)`` pairs of a split.

    Equal hashes mean the same clips *and* the same audio: another synthetic seed, another
    duration or another copy of GTZAN under the same track ids hashes differently.
    """
    pairs = sorted({(str(t), str(a)) for t, a in tracks})
    blob = "\n".join(f"{t}\t{a}" for t, a in pairs).encode()
    return hashlib.sha256(blob).hexdigest()


def seen_before(test: Iterable[tuple[str, str]], train_val: Iterable[tuple[str, str]]) -> list[str]:
    """Test track ids a model already saw in training or validation, by id *or* by audio.

    Matching either way is deliberate: the same song under a new id (a re-encode) or a new
    render under an old id (another copy of the dataset) both make a re-score optimistic.
    """
    seen_ids: set[str] = set()
    seen_audio: set[str] = set()
    for track_id, audio in train_val:
        seen_ids.add(str(track_id))
        if audio:
            seen_audio.add(str(audio))
    return sorted({str(t) for t, a in test if str(t) in seen_ids or (a and str(a) in seen_audio)})
