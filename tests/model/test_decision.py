"""The promotion rule as pure functions: paired bootstrap, gate, selection, data identity.

No MLflow here: :mod:`genreflow.registry.decision` imports none, and this module checks it.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from genreflow.registry.decision import (
    PairedEvidence,
    ValidationScore,
    gate,
    paired_bootstrap,
    seen_before,
    select_candidate,
    split_hash,
)


def _correct(n: int, k: int) -> np.ndarray:
    out = np.zeros(n, dtype=bool)
    out[:k] = True
    return out


def test_decision_module_imports_no_mlflow():
    code = "import sys, genreflow.registry.decision; print('mlflow' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_paired_bootstrap_reports_the_observed_difference_and_an_ordered_interval():
    cand, ref = _correct(100, 80), _correct(100, 70)
    ev = paired_bootstrap(cand, ref, samples=500, seed=0, alpha=0.05)
    assert ev.n_clips == 100 and ev.samples == 500 and ev.alpha == 0.05
    assert ev.candidate_accuracy == 0.8 and ev.reference_accuracy == 0.7
    assert ev.difference == pytest.approx(0.1)
    assert ev.interval[0] == ev.lower_bound <= ev.difference <= ev.interval[1]
    assert 0.0 <= ev.p_better <= 1.0


def test_pairing_matters_identical_correctness_has_zero_width():
    """Both models right on exactly the same clips: every resample has difference 0."""
    same = _correct(50, 30)
    ev = paired_bootstrap(same, same.copy(), samples=200, seed=1, alpha=0.05)
    assert ev.interval == (0.0, 0.0) and ev.p_better == 0.0
    assert not gate(ev, 0.0, "champion").promote  # a tie never promotes, margin 0


def test_paired_interval_is_narrower_than_for_unpaired_clips():
    """The candidate fixes 8 of the reference's errors and breaks nothing: a paired test sees
    a certain gain, where the two accuracies' own intervals would overlap."""
    ref = _correct(100, 70)
    cand = ref.copy()
    cand[70:78] = True
    ev = paired_bootstrap(cand, ref, samples=1000, seed=0, alpha=0.05)
    assert ev.lower_bound > 0.0 and ev.p_better > 0.99
    assert gate(ev, 0.0, "champion").promote


def test_bootstrap_is_deterministic_in_its_seed():
    rng = np.random.default_rng(3)
    cand, ref = rng.random(120) < 0.75, rng.random(120) < 0.7
    a = paired_bootstrap(cand, ref, 300, 5, 0.05)
    assert a == paired_bootstrap(cand, ref, 300, 5, 0.05)
    assert len({paired_bootstrap(cand, ref, 300, s, 0.05) for s in range(5)}) > 1


@pytest.mark.parametrize(
    ("cand", "ref", "samples", "alpha", "message"),
    [
        ([True], [True, False], 100, 0.05, "aligned"),
        ([], [], 100, 0.05, "at least one"),
        ([True], [False], 0, 0.05, "samples"),
        ([True], [False], 100, 0.5, "alpha"),
    ],
)
def test_bootstrap_rejects_bad_input(cand, ref, samples, alpha, message):
    with pytest.raises(ValueError, match=message):
        paired_bootstrap(cand, ref, samples, 0, alpha)


def _evidence(lower: float) -> PairedEvidence:
    return PairedEvidence(
        n_clips=120,
        candidate_accuracy=0.8,
        reference_accuracy=0.7,
        difference=0.1,
        lower_bound=lower,
        interval=(lower, 0.2),
        p_better=0.97,
        alpha=0.05,
        samples=1000,
    )


@pytest.mark.parametrize(
    ("lower", "margin", "promote"),
    [
        (0.01, 0.0, True),
        (0.0, 0.0, False),
        (-0.02, 0.0, False),
        (0.03, 0.02, True),
        (0.02, 0.02, False),
    ],
)
def test_gate_needs_the_lower_bound_strictly_above_the_margin(lower, margin, promote):
    verdict = gate(_evidence(lower), margin, "champion v3")
    assert verdict.promote is promote
    assert "champion v3" in verdict.rule and "95%" in verdict.rule
    assert f"{lower:+.4f}" in verdict.reason and "120 clips" in verdict.reason


def test_equal_models_are_rarely_promoted():
    """The rule's point: two equally good models (0.75 each, independent errors) on 120 test
    clips must not swap the champion more often than alpha (the old rule: 41%)."""
    rng = np.random.default_rng(0)
    evaluations = 300
    promoted = 0
    for i in range(evaluations):
        cand, ref = rng.random(120) < 0.75, rng.random(120) < 0.75
        promoted += gate(paired_bootstrap(cand, ref, 400, i, 0.05), 0.0, "champion").promote
    assert promoted / evaluations <= 0.09  # 5% expected; generous for 300 draws


def test_selection_uses_validation_accuracy_then_macro_f1_then_name():
    a = ValidationScore("cnn", 0.70, 0.60)
    b = ValidationScore("crnn", 0.72, 0.50)
    assert select_candidate([a, b]).name == "crnn"
    c = ValidationScore("crnn", 0.70, 0.65)
    assert select_candidate([a, c]).name == "crnn"
    d = ValidationScore("crnn", 0.70, 0.60)
    assert select_candidate([d, a]).name == "cnn"
    with pytest.raises(ValueError):
        select_candidate([])


def test_split_hash_covers_track_ids_and_audio_content():
    base = split_hash([("rock.1", "aa"), ("jazz.2", "bb")])
    assert base == split_hash([("jazz.2", "bb"), ("rock.1", "aa"), ("rock.1", "aa")])
    assert base != split_hash([("rock.1", "aa"), ("jazz.2", "cc")])  # same ids, new audio
    assert base != split_hash([("rock.1", "aa")])


def test_seen_before_matches_by_id_or_by_audio():
    train_val = [("blues.1", "h1"), ("jazz.2", "h2")]
    test = [("blues.1", "new"), ("pop.9", "h2"), ("rock.3", "h3")]
    assert seen_before(test, train_val) == ["blues.1", "pop.9"]
    assert seen_before([("rock.3", "h3")], train_val) == []
    assert seen_before([("rock.3", "")], [("x", "")]) == []  # blank hashes never match
