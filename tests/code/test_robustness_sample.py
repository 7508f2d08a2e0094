"""Which test clips robustness scores when there are more than ``max_clips``.

A deterministic, genre-stratified sample: every genre keeps its share, the clips within a genre
are spread over its track ids, and the sample depends on the set of clips only, never on the
order the feature store happens to list them in.
"""

from __future__ import annotations

import random
from collections import Counter

import pytest

from genreflow.robustness.score import select_clips

# 3 genres of unequal size (an FMA-like split), track ids in a scrambled order
GENRES = ["rock"] * 50 + ["jazz"] * 30 + ["folk"] * 20
IDS = [f"{i:06d}" for i in range(100)]


def _scrambled(seed: int) -> tuple[list[str], list[str]]:
    pairs = list(zip(IDS, GENRES, strict=True))
    random.Random(seed).shuffle(pairs)
    return [t for t, _ in pairs], [g for _, g in pairs]


@pytest.mark.parametrize("max_clips", [0, 100, 500])
def test_every_clip_when_the_split_fits(max_clips):
    assert select_clips(IDS, GENRES, max_clips) == list(range(100))


def test_each_genre_keeps_its_share():
    chosen = select_clips(IDS, GENRES, 10)
    assert len(chosen) == 10
    assert Counter(GENRES[i] for i in chosen) == {"rock": 5, "jazz": 3, "folk": 2}


def test_shares_that_do_not_divide_go_to_the_largest_remainders():
    chosen = select_clips(IDS, GENRES, 7)  # exact shares 3.5, 2.1, 1.4
    assert Counter(GENRES[i] for i in chosen) == {"rock": 4, "jazz": 2, "folk": 1}


def test_the_sample_spreads_over_each_genres_track_ids():
    chosen = select_clips(IDS, GENRES, 10)
    rock = sorted(IDS[i] for i in chosen if GENRES[i] == "rock")
    assert rock == ["000005", "000015", "000025", "000035", "000045"]


def test_the_sample_does_not_depend_on_the_listing_order():
    expected = {IDS[i] for i in select_clips(IDS, GENRES, 13)}
    for seed in range(3):
        ids, genres = _scrambled(seed)
        chosen = select_clips(ids, genres, 13)
        assert chosen == sorted(chosen)  # indices come back in the given (store) order
        assert {ids[i] for i in chosen} == expected


def test_a_sample_is_named_in_the_reports_and_a_full_run_adds_nothing():
    from genreflow.pipeline.candidate_robustness import sample_report
    from genreflow.robustness.score import PerturbationScore, RobustnessReport

    scores = {"stereo": PerturbationScore(1.0, 1.0)}
    full = RobustnessReport(100, 1.0, scores, population=100)
    assert "sampled_from" not in full.to_dict()
    assert sample_report({"cnn": full, "crnn": full}) is None
    ids = tuple(IDS[i] for i in select_clips(IDS, GENRES, 10))
    part = RobustnessReport(10, 1.0, scores, population=100, sample=ids)
    assert part.to_dict()["n_clips"] == 10 and part.to_dict()["sampled_from"] == 100
    named = sample_report({"cnn": part, "crnn": part})
    assert named is not None
    assert (named["n_clips"], named["n_test_clips"], named["track_ids"]) == (10, 100, list(ids))
