"""The mean/std + logistic-regression baseline on a tiny synthetic feature store."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import genreflow.evaluation.baseline as baseline
from genreflow.core.config import FeatureParams, to_dict
from genreflow.evaluation.baseline import (
    clip_dataset,
    clip_mean_std_features,
    fit_baseline,
    run_baseline,
)
from genreflow.features.store import INDEX_COLUMNS, FeatureStore

GENRES = ["blues", "classical", "jazz", "metal"]
N_MELS, FRAMES, SEGS = 8, 16, 3
TRACKS_PER_SPLIT = {"train": 8, "val": 2, "test": 5}


def _write_store(directory: Path, seed: int = 0, shuffle: bool = True) -> FeatureStore:
    """Segments whose band means depend on the genre (separable), in shuffled segment order."""
    rng = np.random.default_rng(seed)
    profiles = rng.normal(0.0, 6.0, size=(len(GENRES), N_MELS)) - 40.0
    segments, rows = [], []
    for label, genre in enumerate(GENRES):
        for split, n_tracks in TRACKS_PER_SPLIT.items():
            for t in range(n_tracks):
                track_id = f"{genre}.{split}.{t:03d}"
                offset = rng.normal(0.0, 1.0, size=(N_MELS, 1))  # per-track timbre
                for s in range(SEGS):
                    x = profiles[label][:, None] + offset + rng.normal(0, 4.0, (N_MELS, FRAMES))
                    segments.append(x.astype(np.float16))
                    rows.append([track_id, genre, label, split, s, f"{genre}/{track_id}.wav"])
    order = rng.permutation(len(rows)) if shuffle else np.arange(len(rows))
    directory.mkdir(parents=True, exist_ok=True)
    np.save(directory / "segments.npy", np.stack(segments)[order])
    pd.DataFrame([rows[i] for i in order], columns=INDEX_COLUMNS).to_csv(
        directory / "index.csv", index=False
    )
    meta = {
        "features": to_dict(FeatureParams(n_mels=N_MELS)),
        "genres": GENRES,
        "shape": [len(rows), N_MELS, FRAMES],
    }
    (directory / "meta.json").write_text(json.dumps(meta))
    return FeatureStore.load(directory)


@pytest.fixture
def store(tmp_path: Path) -> FeatureStore:
    return _write_store(tmp_path / "features")


def _reference_features(features: np.ndarray, ids: np.ndarray, clip: str) -> np.ndarray:
    """Mean/std of one clip computed the obvious way: concatenate its segments along time."""
    frames = np.concatenate(list(features[ids == clip].astype(np.float64)), axis=1)
    return np.concatenate([frames.mean(axis=1), frames.std(axis=1)])


def test_clip_features_group_interleaved_segments_in_first_seen_order() -> None:
    rng = np.random.default_rng(1)
    ids = np.array(["b", "a", "b", "c", "a", "b"])
    features = rng.normal(-30, 10, size=(6, 5, 7)).astype(np.float16)
    clips, X = clip_mean_std_features(features, ids)
    assert clips.tolist() == ["b", "a", "c"]
    assert X.shape == (3, 10)
    for row, clip in enumerate(clips):
        np.testing.assert_allclose(X[row], _reference_features(features, ids, clip), atol=1e-9)


def test_chunking_does_not_change_clip_features(store: FeatureStore) -> None:
    features, _, ids = store.split("train")
    whole = clip_mean_std_features(features, ids)
    chunked = clip_mean_std_features(features, ids, chunk_segments=5)
    assert whole[0].tolist() == chunked[0].tolist()
    np.testing.assert_allclose(whole[1], chunked[1], rtol=1e-12, atol=1e-9)


def test_clip_dataset_shape_and_labels(store: FeatureStore) -> None:
    ids, X, y = clip_dataset(store, "test")
    n_test = TRACKS_PER_SPLIT["test"] * len(GENRES)
    assert X.shape == (n_test, 2 * N_MELS)
    assert len(set(ids)) == n_test
    expected = {g: k for k, g in enumerate(GENRES)}
    assert [expected[i.split(".")[0]] for i in ids] == y.tolist()
    assert {i.split(".")[1] for i in ids} == {"test"}


def test_baseline_fits_on_train_clips_only_and_beats_chance(
    store: FeatureStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    fitted: dict[str, np.ndarray] = {}

    def spy(X_train, y_train, seed):
        fitted["X"], fitted["y"] = X_train, y_train
        return fit_baseline(X_train, y_train, seed)

    monkeypatch.setattr(baseline, "fit_baseline", spy)
    ids, y_true, y_pred = run_baseline(store, seed=0)

    train_ids, X_train, y_train = clip_dataset(store, "train")
    index = store.index
    assert set(train_ids) == set(index.loc[index["split"] == "train", "track_id"])
    np.testing.assert_array_equal(fitted["X"], X_train)
    np.testing.assert_array_equal(fitted["y"], y_train)
    assert fitted["X"].shape == (TRACKS_PER_SPLIT["train"] * len(GENRES), 2 * N_MELS)

    test_tracks = set(index.loc[index["split"] == "test", "track_id"])
    assert set(ids) == test_tracks and len(ids) == len(test_tracks)
    assert not set(train_ids) & test_tracks
    accuracy = float(np.mean(y_true == y_pred))
    assert accuracy >= 0.8, f"separable synthetic genres, chance is 0.25, got {accuracy}"


def test_baseline_is_deterministic(store: FeatureStore) -> None:
    first = run_baseline(store, seed=3)
    second = run_baseline(store, seed=3)
    for a, b in zip(first, second, strict=True):
        np.testing.assert_array_equal(a, b)


def test_track_in_two_splits_is_refused(tmp_path: Path) -> None:
    s = _write_store(tmp_path / "features")
    leaked = s.index["track_id"] == "blues.train.000"
    s.index.loc[leaked.to_numpy().nonzero()[0][:1], "split"] = "test"
    with pytest.raises(ValueError, match="more than one split.*blues.train.000"):
        run_baseline(s, seed=0)


def test_track_with_mixed_labels_is_refused(tmp_path: Path) -> None:
    s = _write_store(tmp_path / "features")
    first = (s.index["track_id"] == "jazz.test.001").to_numpy().nonzero()[0][0]
    s.index.loc[first, "label"] = 0
    with pytest.raises(ValueError, match="jazz.test.001.*different labels"):
        clip_dataset(s, "test")


def test_bad_shapes_are_rejected() -> None:
    with pytest.raises(ValueError, match="expected \\(segments, n_mels, frames\\)"):
        clip_mean_std_features(np.zeros((3, 4)), np.array(["a", "b", "c"]))
    with pytest.raises(ValueError, match="3 segments but 2 track ids"):
        clip_mean_std_features(np.zeros((3, 4, 5)), np.array(["a", "b"]))
