"""spectrogramize: validated manifest -> feature store, split per track, resampling, figures."""

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch

from genreflow.audio import AudioDecodeError, load_mono
from genreflow.core.config import FeatureParams
from genreflow.core.paths import Layout
from genreflow.features.frontend import LogMelFrontend
from genreflow.features.stage import content_digest, spectrogramize
from genreflow.features.store import FeatureStore

FP = FeatureParams(
    sample_rate=8000,
    n_fft=256,
    hop_length=64,
    n_mels=16,
    f_max=4000.0,
    segment_s=0.5,
    segment_hop_s=0.25,
)
GENRES = ["blues", "jazz", "rock"]


def _write(path, seconds, sr=8000, channels=1, freq=300.0):
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(seconds * sr)) / sr
    mono = 0.3 * np.sin(2 * np.pi * freq * t)
    data = np.stack([mono, 0.5 * mono], axis=1) if channels == 2 else mono
    sf.write(path, data, sr, subtype="PCM_16")


@pytest.fixture()
def layout(tmp_path):
    layout = Layout(tmp_path)
    rows = []
    for g, genre in enumerate(GENRES):
        for i, split in enumerate(["train", "train", "val", "test"]):
            rel = f"data/raw/genres/{genre}/{genre}.{i:05d}.wav"
            _write(tmp_path / rel, 1.2 + 0.1 * i, freq=200 + 150 * g + 20 * i)
            rows.append(
                {"path": rel, "genre": genre, "track_id": f"{genre}.{i:05d}", "split": split}
            )
    # one stereo 44.1 kHz file, which must be resampled and down-mixed
    rel = "data/raw/genres/rock/rock.00009.wav"
    _write(tmp_path / rel, 1.0, sr=44100, channels=2)
    rows.append({"path": rel, "genre": "rock", "track_id": "rock.00009", "split": "train"})
    layout.validated_dir.mkdir(parents=True)
    pd.DataFrame(rows).to_csv(layout.validated_manifest, index=False)
    return layout


def test_store_matches_the_frontend_and_keeps_splits_per_track(layout):
    meta = spectrogramize(FP, GENRES, layout, progress=False)
    store = FeatureStore.load(layout.features_dir)
    assert store.features.dtype == np.float16
    assert store.features.shape[1:] == (FP.n_mels, FP.segment_frames)
    assert list(meta["shape"]) == list(store.features.shape)
    assert len(meta["content_sha256"]) == 64
    assert store.genres == GENRES
    # every track's segments share one split and one label
    per_track = store.index.groupby("track_id").agg({"split": "nunique", "label": "nunique"})
    assert (per_track == 1).all().all()
    assert set(store.index["split"]) == {"train", "val", "test"}
    # the stored segments are exactly what the serving front-end computes from the file
    row = store.index[store.index["track_id"] == "rock.00009"]
    expected = LogMelFrontend(FP).segments(load_mono(layout.absolute(row["path"].iloc[0]), 8000))
    got = torch.from_numpy(store.features[row.index.to_numpy()].astype(np.float32))
    assert torch.equal(got, expected)
    # labels follow the configured genre order
    assert (store.index["label"] == store.index["genre"].map(GENRES.index)).all()


def test_figures_written(layout):
    spectrogramize(FP, GENRES, layout, progress=False)
    assert [p.name for p in layout.figures] == [
        "waveforms.png",
        "spectrograms_db.png",
        "mel_spectrograms.png",
    ]
    for png in layout.figures:
        assert png.parent == layout.figures_dir
        assert png.is_file() and png.read_bytes()[:4] == b"\x89PNG"


def test_parallel_equals_serial(layout, tmp_path):
    spectrogramize(FP, GENRES, layout, progress=False, figures=False, workers=2)
    parallel = np.load(layout.features_dir / "segments.npy")
    spectrogramize(FP, GENRES, layout, progress=False, figures=False, workers=1)
    assert np.array_equal(parallel, np.load(layout.features_dir / "segments.npy"))


def test_content_digest_changes_with_the_features(layout):
    first = spectrogramize(FP, GENRES, layout, progress=False, figures=False)
    again = spectrogramize(FP, GENRES, layout, progress=False, figures=False)
    assert first["content_sha256"] == again["content_sha256"]
    other = FeatureParams(**{**FP.__dict__, "f_max": 3000.0})
    changed = spectrogramize(other, GENRES, layout, progress=False, figures=False)
    assert changed["content_sha256"] != first["content_sha256"]


def test_undecodable_file_fails_naming_it_and_leaves_no_store(layout):
    bad = layout.root / "data/raw/genres/jazz/jazz.00001.wav"
    bad.write_bytes(b"not audio at all")
    with pytest.raises(AudioDecodeError, match="jazz.00001.wav"):
        spectrogramize(FP, GENRES, layout, progress=False, figures=False, workers=2)
    assert not layout.features_dir.exists()
    # nor the half-written store: the temporary directory went with the error
    assert not list(layout.features_dir.parent.glob(".features*"))


def test_streamed_store_keeps_the_content_digest_of_the_whole_store(layout):
    meta = spectrogramize(FP, GENRES, layout, progress=False, figures=False, workers=2)
    store = FeatureStore.load(layout.features_dir, mmap=False)
    assert meta["content_sha256"] == content_digest(store.features, store.index)
    per_split = {s: int((store.index["split"] == s).sum()) for s in ("train", "val", "test")}
    assert meta["n_segments"] == per_split
    assert sum(per_split.values()) == len(store.index) == meta["shape"][0]
    excerpts = pd.read_csv(layout.features_dir / "excerpts.csv")
    assert sum(meta["n_excerpts"].values()) == len(excerpts)
    assert excerpts["n_segments"].sum() == len(store.index)


def test_a_killed_runs_temporary_store_is_removed(layout):
    stale = layout.features_dir.parent / ".features.k1ll3d.tmp"
    stale.mkdir(parents=True)
    (stale / "segments.npy").write_bytes(b"half a store")
    spectrogramize(FP, GENRES, layout, progress=False, figures=False)
    assert not stale.exists()
    assert FeatureStore.load(layout.features_dir).features.shape[0] > 0


def test_empty_manifest_gives_the_empty_store(layout):
    pd.DataFrame(columns=["path", "genre", "track_id", "split"]).to_csv(
        layout.validated_manifest, index=False
    )
    meta = spectrogramize(FP, GENRES, layout, progress=False, figures=False)
    assert meta["shape"] == [0, FP.n_mels, 0]
    reference = layout.root / "empty.npy"
    np.save(reference, np.zeros((0, FP.n_mels, 0), np.float16))
    assert (layout.features_dir / "segments.npy").read_bytes() == reference.read_bytes()
    assert (layout.features_dir / "index.csv").read_text().startswith("track_id,genre,label")


def test_missing_manifest_names_the_stage(tmp_path):
    with pytest.raises(FileNotFoundError, match="dvc repro validate"):
        spectrogramize(FP, GENRES, Layout(tmp_path), progress=False)
