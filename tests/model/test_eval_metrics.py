"""Clip scores and the bootstrap interval, checked against hand-worked values."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from genreflow.evaluation.metrics import bootstrap_accuracy_ci, score_clips

GENRES3 = ["blues", "jazz", "rock"]


def test_three_class_case_matches_hand_computation() -> None:
    # true:  b b b j j r     pred: b b j j r r
    y_true = np.array([0, 0, 0, 1, 1, 2])
    y_pred = np.array([0, 0, 1, 1, 2, 2])
    s = score_clips(y_true, y_pred, GENRES3, bootstrap_samples=200, seed=1)
    assert s.n_clips == 6
    assert s.accuracy == pytest.approx(4 / 6)
    # blues: tp=2 fp=0 fn=1 -> P=1, R=2/3, F1=0.8
    assert s.per_class["blues"] == pytest.approx(
        {"precision": 1.0, "recall": 2 / 3, "f1": 0.8, "support": 3}
    )
    # jazz: tp=1 fp=1 fn=1 -> P=R=F1=0.5
    assert s.per_class["jazz"] == pytest.approx(
        {"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2}
    )
    # rock: tp=1 fp=1 fn=0 -> P=0.5, R=1, F1=2/3
    assert s.per_class["rock"] == pytest.approx(
        {"precision": 0.5, "recall": 1.0, "f1": 2 / 3, "support": 1}
    )
    assert s.macro_f1 == pytest.approx((0.8 + 0.5 + 2 / 3) / 3)
    low, high = s.accuracy_ci95
    assert 0.0 <= low <= s.accuracy <= high <= 1.0
    assert low < high


def test_absent_genre_is_listed_but_not_averaged() -> None:
    genres = [*GENRES3, "metal"]  # metal never occurs and is never predicted
    y_true = np.array([0, 0, 0, 1, 1, 2])
    y_pred = np.array([0, 0, 1, 1, 2, 2])
    s = score_clips(y_true, y_pred, genres, bootstrap_samples=50)
    assert s.per_class["metal"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    assert s.macro_f1 == pytest.approx((0.8 + 0.5 + 2 / 3) / 3)


def test_genre_predicted_but_never_present_costs_macro_f1() -> None:
    y_true = np.array([0, 0, 1, 1])
    y_pred = np.array([0, 2, 1, 1])  # one blues clip called rock; rock never occurs
    s = score_clips(y_true, y_pred, GENRES3, bootstrap_samples=50)
    # blues: P=1 R=1/2 F1=2/3; jazz: F1=1; rock: tp=0 fp=1 -> F1=0
    assert s.per_class["rock"]["support"] == 0
    assert s.macro_f1 == pytest.approx((2 / 3 + 1.0 + 0.0) / 3)


def test_perfect_and_hopeless_classifiers_have_degenerate_intervals() -> None:
    y = np.array([0, 1, 2, 1, 0, 2, 2])
    assert score_clips(y, y, GENRES3).accuracy_ci95 == (1.0, 1.0)
    assert score_clips(y, (y + 1) % 3, GENRES3).accuracy_ci95 == (0.0, 0.0)


def _correct(n: int, accuracy: float) -> np.ndarray:
    k = round(n * accuracy)
    return np.r_[np.ones(k), np.zeros(n - k)]


def test_bootstrap_is_deterministic_per_seed() -> None:
    c = _correct(120, 0.6)
    assert bootstrap_accuracy_ci(c, 500, seed=3) == bootstrap_accuracy_ci(c, 500, seed=3)
    # Accuracies sit on a k/n grid, so one other seed may land on the same quantiles; with few
    # resamples, several seeds must not all agree.
    assert len({bootstrap_accuracy_ci(c, 40, seed=s) for s in range(6)}) > 1


def test_bootstrap_narrows_with_more_clips_and_matches_normal_approximation() -> None:
    small = bootstrap_accuracy_ci(_correct(50, 0.7), 2000, seed=0)
    large = bootstrap_accuracy_ci(_correct(2000, 0.7), 2000, seed=0)
    assert small[0] <= 0.7 <= small[1] and large[0] <= 0.7 <= large[1]
    assert large[1] - large[0] < (small[1] - small[0]) / 3
    # For n=2000 the bootstrap interval should sit close to p +- 1.96 sqrt(p(1-p)/n).
    half = 1.96 * math.sqrt(0.7 * 0.3 / 2000)
    assert large[0] == pytest.approx(0.7 - half, abs=0.003)
    assert large[1] == pytest.approx(0.7 + half, abs=0.003)


def test_bootstrap_blocks_do_not_change_the_draws(monkeypatch: pytest.MonkeyPatch) -> None:
    import genreflow.evaluation.bootstrap as bootstrap

    c = _correct(80, 0.55)
    whole = bootstrap_accuracy_ci(c, 300, seed=7)
    monkeypatch.setattr(bootstrap, "MAX_BLOCK", 80 * 7)  # 7 resamples per block
    assert bootstrap_accuracy_ci(c, 300, seed=7) == whole


def test_to_dict_is_plain_json_with_flat_headline_numbers() -> None:
    y_true = np.array([0, 1, 2, 2])
    y_pred = np.array([0, 1, 2, 1])
    d = score_clips(y_true, y_pred, GENRES3, bootstrap_samples=100).to_dict()
    again = json.loads(json.dumps(d))
    assert again == d
    assert set(d) == {
        "accuracy",
        "accuracy_ci95_low",
        "accuracy_ci95_high",
        "macro_f1",
        "n_clips",
        "per_class",
    }
    assert d["accuracy"] == pytest.approx(0.75)
    assert d["n_clips"] == 4
    assert set(d["per_class"]) == set(GENRES3)


@pytest.mark.parametrize(
    ("y_true", "y_pred", "message"),
    [
        ([0, 1], [0], "y_true has 2 clips but y_pred has 1"),
        ([], [], "no clips"),
        ([0, 3], [0, 1], "y_true has label 3 outside 0..2"),
        ([0, 1], [0, -1], "y_pred has label -1"),
    ],
)
def test_bad_inputs_are_rejected_with_a_reason(y_true, y_pred, message) -> None:
    with pytest.raises(ValueError, match=message):
        score_clips(np.array(y_true, dtype=int), np.array(y_pred, dtype=int), GENRES3)


def test_bootstrap_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="empty"):
        bootstrap_accuracy_ci(np.array([]), 10, 0)
    with pytest.raises(ValueError, match="samples"):
        bootstrap_accuracy_ci(np.ones(3), 0, 0)
    with pytest.raises(ValueError, match="level"):
        bootstrap_accuracy_ci(np.ones(3), 10, 0, level=1.0)
