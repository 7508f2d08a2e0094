"""Robustness scores every candidate on the same perturbed files, and the numbers are the
served path's.

The session's trained tiny repository (both logged models, read only) is scored on its test
clips. Each perturbation must be written once per clip whatever the number of models (counted
through ``score_models``' public ``on_file`` hook, which sees each real file written), and
each model's per-clip genres must equal the unshared reference: every file written and sent
through ``ServedModel.analyse`` one model and one file at a time, as a user's file is.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from pathlib import Path

import pytest

from genreflow.core.config import RobustnessParams

# Fewer perturbations than the default keep the test quick, one of each kind that touches a
# different encoder or decoder path (lossless and lossy, another rate, stereo, noise).
SETTINGS = replace(
    RobustnessParams(), gains_db=(-10.0, 6.0), sample_rates=(16000,), formats=("wav", "mp3")
)
ARCHS = ("cnn", "crnn")


@pytest.fixture(scope="module")
def served(trained_tiny):
    """Both candidates' logged models, as evaluate loads them, and the test clips."""
    from genreflow.features.store import FeatureStore
    from genreflow.pipeline.candidate_runs import candidate_run
    from genreflow.pipeline.held_out_clips import load_test_clips
    from genreflow.serving.served import ServedModel
    from support.tiny import pointed_at

    layout = trained_tiny.layout
    with pytest.MonkeyPatch.context() as mp, pointed_at(trained_tiny.uri):
        mp.setenv("MLFLOW_TRACKING_URI", trained_tiny.uri)
        sections = {"cnn": "train_cnn", "crnn": "train_lstm"}
        models = {
            arch: ServedModel.load(
                candidate_run(sections[arch], arch, layout, trained_tiny.uri)["model_uri"]
            )
            for arch in ARCHS
        }
    clips = load_test_clips(FeatureStore.load(layout.features_dir), layout)
    return models, clips, trained_tiny.params.seed


def _reference(model, paths, seed, tmp: Path) -> dict[str, list[str]]:
    """Per-clip genres the unshared way: each file written, then ``analyse``-d by one model."""
    from genreflow.audio import read_audio
    from genreflow.robustness.perturb import perturbations
    from genreflow.robustness.score import CLEAN, clip_seed

    out: dict[str, list[str]] = {CLEAN: [model.analyse(p).genre for p in paths]}
    for p in perturbations(SETTINGS):
        out[p.name] = []
        for path in paths:
            wave, rate = read_audio(path)
            written = p.write(wave, rate, tmp, "ref", clip_seed(seed, Path(path)))
            out[p.name].append(model.analyse(written).genre)
            written.unlink()
    return out


def test_each_perturbation_is_encoded_once_per_clip_for_all_candidates(served):
    from genreflow.robustness.perturb import perturbations
    from genreflow.robustness.score import score_models

    models, clips, seed = served
    seen: list[tuple[str, int]] = []
    reports = score_models(
        models,
        clips.paths,
        clips.genres,
        SETTINGS,
        seed,
        progress=False,
        on_file=lambda f: seen.append((f.name, f.stat().st_size)),
    )
    names = [p.name for p in perturbations(SETTINGS)]
    assert set(reports) == set(ARCHS)
    assert all(size > 0 for _, size in seen)  # real files, on disk when decoded
    per_name = Counter(name.split(".")[1] for name, _ in seen)
    assert per_name == {n: len(clips.paths) for n in names}  # once per clip, not per model


def test_shared_scoring_gives_each_models_own_per_clip_genres(served, tmp_path):
    from genreflow.robustness.score import CLEAN, score_models

    models, clips, seed = served
    reports = score_models(models, clips.paths, clips.genres, SETTINGS, seed, progress=False)
    for arch, model in models.items():
        expected = _reference(model, clips.paths, seed, tmp_path)
        got = {name: list(genres) for name, genres in reports[arch].predictions.items()}
        assert got == expected, arch
        assert reports[arch].failed == 0
        assert set(got) == {CLEAN, *reports[arch].scores}


def test_decoded_scoring_equals_the_file_path_bit_for_bit(served):
    models, clips, _ = served
    for model in models.values():
        decoded = [model.decode(p) for p in clips.paths]
        for path, d in zip(clips.paths, decoded, strict=True):
            direct, shared = model.analyse(path), model.analyse_decoded(d, str(path))
            assert shared.probabilities == direct.probabilities
            assert (shared.embedding == direct.embedding).all()


def test_several_clips_per_forward_give_the_same_genres(served):
    models, clips, _ = served
    paths = [str(p) for p in clips.paths]
    for model in models.values():
        decoded = [model.decode(p) for p in clips.paths]
        one = model.analyse_decoded_many(decoded, paths, clips_per_forward=1)
        many = model.analyse_decoded_many(decoded, paths, clips_per_forward=4)
        assert [a.genre for a in many] == [a.genre for a in one]
        assert [a.path for a in many] == paths
        for a, b in zip(one, many, strict=True):  # a larger batch rounds its sums otherwise
            assert list(a.probabilities) == list(b.probabilities)
            assert a.probabilities == pytest.approx(b.probabilities, abs=1e-5)
