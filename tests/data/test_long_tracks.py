"""Full-length tracks: validate accepts them (bounded decoding), spectrogramize takes
deterministic excerpts per track, ``scheme: auto`` falls back to the stratified split for a
user's own file names, and repeated track ids are caught.

The pipeline end to end on a tree of long mixed-format tracks is
``tests/pipeline/test_own_collection.py``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch
import torchaudio.functional as AF

from genreflow.audio import load_mono
from genreflow.core.config import (
    ConfigError,
    DataParams,
    ExcerptParams,
    FeatureParams,
    LocalParams,
    Params,
    SplitParams,
    ValidateParams,
    validate_params,
)
from genreflow.core.paths import Layout
from genreflow.features.excerpts import (
    EXCERPTS_FILE,
    Excerpt,
    plan_excerpts,
    read_excerpt,
    track_length,
)
from genreflow.features.frontend import LogMelFrontend
from genreflow.features.stage import spectrogramize
from genreflow.features.store import FeatureStore
from genreflow.sources.manifest import read_manifest
from genreflow.sources.stage import fetch
from genreflow.validation import ValidationFailed, validate
from genreflow.validation.decode_table import audio_hash, inspect_clip, measure_audio
from genreflow.validation.split import choose_scheme

FORMATS = {"wav": "PCM_16", "flac": "PCM_16", "ogg": "VORBIS", "mp3": "MPEG_LAYER_III"}


def write_audio(path: Path, wave: np.ndarray, sr: int) -> None:
    """``wave`` (frames,) or (frames, channels) in the format its suffix names.

    Written in blocks: libsndfile 1.2's Vorbis encoder crashes the process when handed
    tens of seconds in one call.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    channels = 1 if wave.ndim == 1 else wave.shape[1]
    subtype = FORMATS[path.suffix[1:].lower()]
    with sf.SoundFile(path, "w", sr, channels, subtype=subtype) as fh:
        for i in range(0, len(wave), 1 << 14):
            fh.write(wave[i : i + (1 << 14)])


def music(seconds: float, sr: int, seed: int, channels: int = 1) -> np.ndarray:
    """A few drifting partials over noise: not silent, not clipped, different per seed."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    y = sum(
        0.08 * np.sin(2 * np.pi * f * t * (1 + 0.01 * np.sin(0.3 * t)))
        for f in rng.uniform(110, 2000, 4)
    )
    y = (y + 0.01 * rng.standard_normal(t.size)).astype(np.float32)
    if channels == 1:
        return y
    return np.stack([y, 0.7 * np.roll(y, 100)], axis=1)


# --------------------------------------------------------------------------- the plan
def test_plan_positions_are_exact_and_inside_the_track() -> None:
    sr, seconds = 1000, 100
    total = sr * seconds
    spread = plan_excerpts(total, sr, ExcerptParams(length_s=10.0, count=3, position="spread"))
    # Three equal parts of 33.3 s; one 10-s excerpt centred in each.
    assert [(e.start, e.frames) for e in spread] == [(11666, 10000), (45000, 10000), (78333, 10000)]
    start = plan_excerpts(total, sr, ExcerptParams(length_s=10.0, count=3, position="start"))
    assert [e.start for e in start] == [0, 10000, 20000]
    middle = plan_excerpts(total, sr, ExcerptParams(length_s=10.0, count=3, position="middle"))
    assert [e.start for e in middle] == [35000, 45000, 55000]
    for plan in (spread, start, middle):
        assert not any(e.whole for e in plan)
        ends = [e.start + e.frames for e in plan]
        assert all(e.start >= 0 for e in plan) and max(ends) <= total
        assert all(a <= b.start for a, b in zip(ends, plan[1:], strict=False))  # no overlap


@pytest.mark.parametrize("position", ["spread", "start", "middle"])
def test_a_track_no_longer_than_the_excerpts_is_used_whole(position: str) -> None:
    params = ExcerptParams(length_s=30.0, count=3, position=position)
    for seconds in (5.0, 12.0, 30.013, 90.0):  # tiny, synthetic default, GTZAN, exactly 3 x 30
        total = int(round(seconds * 22050))
        assert plan_excerpts(total, 22050, params) == [Excerpt(0, total, whole=True)]
    assert len(plan_excerpts(90 * 22050 + 1, 22050, params)) == 3


def test_plan_is_deterministic_and_follows_the_length_only() -> None:
    p = ExcerptParams(length_s=7.5, count=4, position="spread")
    assert plan_excerpts(4_410_000, 44100, p) == plan_excerpts(4_410_000, 44100, p)
    assert all(e.frames == int(round(7.5 * 44100)) for e in plan_excerpts(4_410_000, 44100, p))


def test_excerpt_length_shorter_than_a_segment_is_refused() -> None:
    params = Params(features=FeatureParams(excerpt=ExcerptParams(length_s=2.0)))
    with pytest.raises(ConfigError, match=r"features.excerpt.length_s: 2.0 .*segment_s \(3\)"):
        validate_params(params)


# --------------------------------------------------------------------------- reading
@pytest.mark.parametrize("fmt", ["wav", "flac"])
def test_read_excerpt_is_the_slice_of_the_whole_decode(tmp_path: Path, fmt: str) -> None:
    path = tmp_path / f"x.{fmt}"
    write_audio(path, music(20.0, 16000, seed=1, channels=2), 16000)
    assert track_length(path) == (320000, 16000)
    part = Excerpt(start=123457, frames=48000)
    whole, _ = sf.read(path, dtype="float32", always_2d=True)
    mono = torch.from_numpy(whole.T.mean(axis=0)[part.start : part.start + part.frames].copy())
    assert torch.equal(read_excerpt(path, part, 16000), mono)
    expected = AF.resample(mono, orig_freq=16000, new_freq=8000)
    assert torch.equal(read_excerpt(path, part, 8000), expected)


@pytest.mark.parametrize("fmt", ["ogg", "mp3"])
def test_compressed_excerpts_are_deterministic(tmp_path: Path, fmt: str) -> None:
    path = tmp_path / f"x.{fmt}"
    write_audio(path, music(20.0, 44100, seed=2), 44100)
    part = plan_excerpts(*track_length(path), ExcerptParams(length_s=4.0, count=2))[1]
    first = read_excerpt(path, part, 22050)
    assert first.shape == (4 * 22050,)
    assert torch.equal(first, read_excerpt(path, part, 22050))


# --------------------------------------------------------------------------- spectrogramize
FP = FeatureParams(
    sample_rate=8000,
    n_fft=256,
    hop_length=128,
    n_mels=16,
    f_max=4000.0,
    segment_s=1.0,
    segment_hop_s=0.5,
    excerpt=ExcerptParams(length_s=2.0, count=3, position="spread"),
)
GENRES = ["jazz", "rock"]
# name -> (genre, split, seconds, sample rate, channels)
TRACKS = {
    "Long Song A.flac": ("jazz", "train", 20.0, 44100, 2),
    "long-b.ogg": ("jazz", "val", 15.0, 48000, 1),
    "Long C.mp3": ("rock", "test", 18.0, 22050, 2),
    "clip d.wav": ("rock", "train", 4.0, 8000, 1),  # <= 3 x 2 s: used whole
}


@pytest.fixture()
def long_layout(tmp_path: Path) -> Layout:
    layout = Layout(tmp_path)
    rows = []
    for k, (name, (genre, split, seconds, sr, channels)) in enumerate(TRACKS.items()):
        rel = f"data/raw/genres/{genre}/{name}"
        write_audio(tmp_path / rel, music(seconds, sr, seed=k, channels=channels), sr)
        rows.append({"path": rel, "genre": genre, "track_id": Path(name).stem, "split": split})
    layout.validated_dir.mkdir(parents=True)
    pd.DataFrame(rows).to_csv(layout.validated_manifest, index=False)
    return layout


def test_each_long_track_gives_its_excerpts_in_its_split(long_layout: Layout) -> None:
    meta = spectrogramize(FP, GENRES, long_layout, progress=False, figures=True, workers=2)
    store = FeatureStore.load(long_layout.features_dir)
    excerpts = pd.read_csv(long_layout.features_dir / EXCERPTS_FILE, dtype={"track_id": str})
    manifest = pd.read_csv(long_layout.validated_manifest, dtype=str).set_index("track_id")

    # One split per track, the manifest's, on every segment and every excerpt.
    assert (store.index.groupby("track_id")["split"].nunique() == 1).all()
    for track, split in store.index.groupby("track_id")["split"].first().items():
        assert split == manifest.loc[track, "split"]
    assert (excerpts["split"] == excerpts["track_id"].map(manifest["split"])).all()

    counts = excerpts.groupby("track_id").size().to_dict()
    assert counts == {"Long Song A": 3, "long-b": 3, "Long C": 3, "clip d": 1}
    assert meta["n_excerpts"] == {"train": 4, "val": 3, "test": 3}
    for track, rows in excerpts.groupby("track_id"):
        # The segment ranges tile the track's rows of the index, in order.
        segs = store.index[store.index["track_id"] == track]
        assert list(segs["segment"]) == list(range(len(segs)))
        assert rows["n_segments"].sum() == len(segs)
        assert list(rows["first_segment"]) == [0, *np.cumsum(rows["n_segments"])[:-1]]
    long_rows = excerpts[excerpts["track_id"] != "clip d"]
    assert (long_rows["length_s"] == 2.0).all() and (long_rows["n_segments"] == 3).all()
    whole = excerpts.set_index("track_id").loc["clip d"]
    assert (whole["start_s"], whole["length_s"]) == (0.0, 4.0)

    # Each excerpt's segments are the front-end's segments of exactly that excerpt.
    frontend = LogMelFrontend(FP).eval()
    for row in excerpts.itertuples():
        path = long_layout.absolute(row.path)
        frames, sr = track_length(path)
        part = plan_excerpts(frames, sr, FP.excerpt)[row.excerpt]
        assert part.start == round(row.start_s * sr)
        with torch.inference_mode():
            expected = frontend.segments(read_excerpt(path, part, FP.sample_rate))
        first = store.index.index[store.index["track_id"] == row.track_id][row.first_segment]
        got = store.features[first : first + row.n_segments].astype(np.float32)
        assert torch.equal(torch.from_numpy(got), expected)
    # The short clip: exactly what it gave before excerpts existed.
    clip = long_layout.absolute(manifest.loc["clip d", "path"])
    rows = store.index.index[store.index["track_id"] == "clip d"]
    with torch.inference_mode():
        before = frontend.segments(load_mono(clip, FP.sample_rate))
    assert torch.equal(torch.from_numpy(store.features[rows].astype(np.float32)), before)
    assert json.loads((long_layout.features_dir / "meta.json").read_text())["features"][
        "excerpt"
    ] == {"length_s": 2.0, "count": 3, "position": "spread"}


def test_manifest_lengths_and_headers_give_the_same_store(long_layout: Layout) -> None:
    """validate's decoded frame counts (in the manifest) and the headers agree here."""
    spectrogramize(FP, GENRES, long_layout, progress=False, figures=False, workers=1)
    from_headers = (long_layout.features_dir / "segments.npy").read_bytes()
    manifest = pd.read_csv(long_layout.validated_manifest)
    lengths = [track_length(long_layout.absolute(p)) for p in manifest["path"]]
    manifest["frames"] = [f for f, _ in lengths]
    manifest["sample_rate"] = [sr for _, sr in lengths]
    manifest.to_csv(long_layout.validated_manifest, index=False)
    spectrogramize(FP, GENRES, long_layout, progress=False, figures=False, workers=2)
    assert (long_layout.features_dir / "segments.npy").read_bytes() == from_headers


# --------------------------------------------------------------------------- validate
def test_streamed_measurements_equal_the_whole_file_ones(tmp_path: Path) -> None:
    sr = 8000
    wave = music(9.0, sr, seed=3, channels=2) * 4.0  # some samples past full scale
    wave[[5, 70000], 0] = np.nan
    wave[123, 1] = np.inf
    path = tmp_path / "s.wav"
    sf.write(path, wave, sr, subtype="FLOAT")
    whole, _ = sf.read(path, dtype="float32", always_2d=True)
    finite = whole[np.isfinite(whole)]
    for block in (1000, 4096, 1 << 16):  # block edges inside and beyond the file
        got = measure_audio(path, block_frames=block)
        assert got["frames"] == len(whole) and got["channels"] == 2
        assert (got["nan_samples"], got["nonfinite_samples"]) == (2, 3)
        assert got["audio_sha256"] == audio_hash(whole.T)
        rms = math.sqrt(np.mean(np.square(finite, dtype=np.float64)))
        assert got["rms_dbfs"] == pytest.approx(20 * math.log10(rms), abs=1e-9)
        assert got["clipping_ratio"] == np.mean(np.abs(finite) >= 0.999)


def test_a_file_over_the_bound_is_judged_from_its_header(tmp_path: Path) -> None:
    path = tmp_path / "long.flac"
    write_audio(path, music(12.0, 8000, seed=4), 8000)
    row = inspect_clip(path, "long.flac", max_duration_s=10.0)
    assert row["decodable"] and row["duration_s"] == 12.0 and row["frames"] == 96000
    # Not decoded: no sample measurement, so nothing but "too long" can fire.
    assert math.isnan(row["rms_dbfs"]) and row["audio_sha256"] is None
    assert not math.isnan(inspect_clip(path, "long.flac", max_duration_s=13.0)["rms_dbfs"])


def _raw(root: Path, files: dict[str, tuple[float, int, int]]) -> None:
    """``{"genre/name.ext": (seconds, rate, channels)}`` plus the raw manifest, as fetch writes."""
    rows = []
    for k, (rel, (seconds, sr, channels)) in enumerate(files.items()):
        path = root / "data" / "raw" / "genres" / rel
        write_audio(path, music(seconds, sr, seed=10 + k, channels=channels), sr)
        data = path.read_bytes()
        rows.append(
            {
                "path": path.relative_to(root).as_posix(),
                "genre": path.parent.name,
                "track_id": path.stem,
                "bytes": len(data),
                "sha256": hashlib.sha256(data).hexdigest(),
            }
        )
    pd.DataFrame(rows).to_csv(root / "data" / "raw" / "manifest.csv", index=False)


# Own file names: none is a GTZAN id. With the default split seed they hash to all three splits.
OWN = {
    "jazz/So What (live).flac": (200.0, 8000, 2),
    "jazz/blue in green.ogg": (45.0, 16000, 1),
    "jazz/Track 01.mp3": (60.0, 22050, 1),
    "jazz/freddie.wav": (50.0, 8000, 1),
    "rock/anthem.ogg": (42.0, 8000, 2),
    "rock/riff.flac": (240.0, 8000, 1),
    "rock/b-side.wav": (55.0, 11025, 1),
    "rock/encore.mp3": (48.0, 16000, 2),
}


def _own_params(scheme: str = "auto") -> Params:
    # The default ValidateParams: max_duration_s 3600 s.
    return Params(
        data=DataParams(source="local", genres=("jazz", "rock")),
        validate=ValidateParams(split=SplitParams(scheme=scheme)),
    )


@pytest.fixture(scope="module")
def own_run(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("own")
    _raw(root, OWN)
    layout = Layout.from_root(root)
    summary = validate(_own_params(), layout, progress=False, workers=2)
    return layout, summary


def test_full_length_tracks_pass_with_the_default_bound(own_run) -> None:
    layout, summary = own_run
    assert ValidateParams().max_duration_s == 3600.0
    assert summary.passed and summary.n_quarantined == 0 and summary.n_accepted == len(OWN)
    manifest = pd.read_csv(layout.validated_manifest)
    assert manifest["duration_s"].min() > 40.0 and manifest["duration_s"].max() == 240.0
    assert set(manifest["split"]) == {"train", "val", "test"}
    assert manifest["track_id"].is_unique


def test_auto_falls_back_to_stratified_for_own_file_names(own_run, caplog) -> None:
    layout, summary = own_run
    assert summary.scheme == "stratified"
    assert summary.scheme_reason.startswith(
        "auto: none of the 8 track ids (e.g. 'So What (live)') is in torchaudio's GTZAN"
    )
    saved = json.loads(layout.validation_summary.read_text())
    assert saved["scheme"] == "stratified" and saved["scheme_reason"] == summary.scheme_reason
    with caplog.at_level(logging.WARNING, logger="genreflow.validation.split"):
        choice = choose_scheme("auto", "local", ["mine", "yours"])
    assert choice.scheme == "stratified"
    (record,) = caplog.records
    assert record.levelno == logging.WARNING
    assert "none of the 2 track ids (e.g. 'mine')" in record.getMessage()
    assert "so the stratified split" in record.getMessage()
    assert choose_scheme("auto", "local", ["blues.00000", "mine"]).scheme == "gtzan"
    assert choose_scheme("auto", "synthetic", ["mine"]).reason.startswith("auto: data.source")
    assert choose_scheme("stratified", "local", ["blues.00000"]).scheme == "stratified"


def test_explicit_gtzan_with_own_names_stays_an_error(tmp_path: Path) -> None:
    _raw(tmp_path, dict(list(OWN.items())[:2]))
    with pytest.raises(ValidationFailed) as info:
        validate(_own_params("gtzan"), Layout.from_root(tmp_path), progress=False, workers=1)
    message = str(info.value)
    assert "none of the 2 track ids (e.g. 'So What (live)')" in message
    assert "validate.split.scheme is gtzan" in message and "scheme: stratified" in message


def test_a_repeated_track_id_is_quarantined_naming_the_other_file(tmp_path: Path) -> None:
    files = {
        "jazz/Track 01.flac": (5.0, 8000, 1),
        "rock/Track 01.wav": (5.0, 8000, 1),
        **{f"{g}/{g}-{i}.wav": (5.0, 8000, 1) for g in ("jazz", "rock") for i in range(4)},
    }
    _raw(tmp_path, files)
    layout = Layout.from_root(tmp_path)
    summary = validate(_own_params(), layout, progress=False, workers=1)
    q = pd.read_csv(layout.validation_quarantine).set_index("path")
    assert list(q.index) == ["data/raw/genres/rock/Track 01.wav"]
    assert q.iloc[0]["reason"] == (
        "track id 'Track 01' repeats data/raw/genres/jazz/Track 01.flac (track ids are file "
        "names without the extension and must be unique; rename one)"
    )
    assert summary.n_quarantined == 1
    assert pd.read_csv(layout.validated_manifest)["track_id"].is_unique


# --------------------------------------------------------------------------- the local source
def test_local_source_takes_genre_folders_with_any_file_names(tmp_path: Path) -> None:
    """``<genre>/<any name>.<ext>``: the file name (without extension) is the track id."""
    mine = tmp_path / "my music"
    for rel, (seconds, sr, channels) in OWN.items():
        write_audio(mine / rel, music(min(seconds, 3.0), sr, seed=1, channels=channels), sr)
    layout = Layout.from_root(tmp_path / "repo")
    params = DataParams(source="local", genres=("jazz", "rock"), local=LocalParams(str(mine)))
    fetch(params, layout, progress=False)
    rows = read_manifest(layout.raw_manifest)
    assert sorted((r["genre"], r["track_id"]) for r in rows) == sorted(
        (Path(rel).parent.name, Path(rel).stem) for rel in OWN
    )
    assert {Path(r["path"]).suffix for r in rows} == {".flac", ".ogg", ".mp3", ".wav"}
