"""Robustness *agreement* is measured against the clean file's prediction, not the truth.

The tiny networks are right on every test clip, so on the true labels agreement and accuracy
coincide and a scorer that compared perturbed predictions with the true genre would pass every
other robustness test. Here the test clips of one genre are relabelled as another, so the
served model (the real logged CNN of the session's trained tiny repository, read through
files as a user's are) is "wrong" on a third of them: accuracy drops below 1, while agreement
under a lossless round trip (WAV, FLAC) stays exactly 1, and no agreement moves with the
labels.
"""

from __future__ import annotations

import numpy as np
import pytest

from genreflow.core.config import RobustnessParams

# Only what should keep every prediction (a lossless re-encode), plus the always-on noise.
LOSSLESS = RobustnessParams(
    gains_db=(), stereo=False, sample_rates=(), formats=("wav", "flac"), max_clips=0
)


def test_agreement_follows_the_clean_prediction_whatever_the_labels(trained_tiny_store):
    from genreflow.features.store import FeatureStore
    from genreflow.pipeline.candidate_runs import candidate_run
    from genreflow.pipeline.held_out_clips import load_test_clips
    from genreflow.robustness.score import score_served
    from genreflow.serving.served import ServedModel

    trained_tiny = trained_tiny_store  # MLflow names its store (environment and process-wide)
    layout = trained_tiny.layout
    info = candidate_run("train_cnn", "cnn", layout, trained_tiny.uri)
    served = ServedModel.load(info["model_uri"])
    clips = load_test_clips(FeatureStore.load(layout.features_dir), layout)
    first, second = trained_tiny.params.data.genres[:2]
    relabelled = [second if g == first else g for g in clips.genres]
    assert relabelled != list(clips.genres)

    true = score_served(served, clips.paths, clips.genres, LOSSLESS, progress=False)
    wrong = score_served(served, clips.paths, relabelled, LOSSLESS, progress=False)

    assert set(wrong.scores) == {"format_wav", "format_flac", "noise_-40db"}
    assert wrong.failed == true.failed == 0
    # Accuracy is against the labels: the relabelled clips the model calls `first` count wrong.
    clean = [served.analyse(p).genre for p in clips.paths]
    expected = float(np.mean([c == t for c, t in zip(clean, relabelled, strict=True)]))
    assert wrong.clean_accuracy == pytest.approx(expected)
    assert wrong.clean_accuracy < 1.0 and wrong.clean_accuracy < true.clean_accuracy
    # Agreement is against the clean prediction: a lossless round trip agrees on every clip,
    # though its accuracy is as low as the clean files'.
    for name in ("format_wav", "format_flac"):
        assert wrong.scores[name].agreement == 1.0, (name, wrong.scores[name])
        assert wrong.scores[name].accuracy == wrong.clean_accuracy
    # and no perturbation's agreement depends on what the clips are labelled
    agreements = {n: s.agreement for n, s in wrong.scores.items()}
    assert agreements == {n: s.agreement for n, s in true.scores.items()}
