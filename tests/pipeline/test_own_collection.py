"""End to end on a user's own collection: full-length, mixed-format tracks in two genre folders.

A new user's tree (``<genre>/<any name>.<ext>``: OGG, MP3, FLAC and WAV at 22.05-48 kHz,
mono and stereo, 41-59 s each) is given to the ``local`` source with the default
``validate`` params (``scheme: auto``, ``max_duration_s`` 3600 s) and tiny excerpts, and
``dvc repro`` must run every stage: no track quarantined for its length, ``auto`` falling back
to the stratified split, one split per track, and ``features.excerpt.count`` excerpts per
track. (Named apart from ``tests/data/test_long_tracks.py``: pytest refuses two test
modules with one name in a tree without packages.)
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import yaml

pytestmark = pytest.mark.integration

SOURCE = "data/local/mine"  # inside the copy, git-ignored by data/local/.gitignore
EXCERPT = {"length_s": 6.0, "count": 3, "position": "spread"}
# file -> (seconds, sample rate, channels). With the default split seed these names hash to
# train 5, val 1, test 2, with both genres in train and test.
TRACKS = {
    "jazz/Blue Train.ogg": (53.0, 44100, 2),
    "jazz/night owl.mp3": (47.0, 48000, 1),
    "jazz/Side A - 03.flac": (59.0, 32000, 2),
    "jazz/lullaby.wav": (41.0, 22050, 1),
    "rock/Anthem.mp3": (44.0, 44100, 2),
    "rock/riff 2.ogg": (57.0, 48000, 1),
    "rock/Live at Home.flac": (50.0, 22050, 1),
    "rock/encore.wav": (42.0, 44100, 2),
}
SUBTYPES = {".wav": "PCM_16", ".flac": "PCM_16", ".ogg": "VORBIS", ".mp3": "MPEG_LAYER_III"}


def _music(seconds: float, sr: int, seed: int, channels: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    y = sum(0.08 * np.sin(2 * np.pi * f * t) for f in rng.uniform(110, 3000, 4))
    y = (y + 0.01 * rng.standard_normal(t.size)).astype(np.float32)
    return y if channels == 1 else np.stack([y, 0.7 * y], axis=1)


def write_tree(root: Path) -> None:
    """The tracks of :data:`TRACKS` under ``root``, each in the format its suffix names."""
    for k, (rel, (seconds, sr, channels)) in enumerate(TRACKS.items()):
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        wave = _music(seconds, sr, seed=k, channels=channels)
        # In blocks: libsndfile 1.2's Vorbis encoder crashes on tens of seconds in one call.
        with sf.SoundFile(path, "w", sr, channels, subtype=SUBTYPES[path.suffix]) as fh:
            for i in range(0, len(wave), 1 << 14):
                fh.write(wave[i : i + (1 << 14)])


def _own_params(params: dict, kit) -> dict:
    params = kit.tiny_params(params)
    params["data"].update(source="local", genres=["jazz", "rock"], local={"path": SOURCE})
    params["features"]["excerpt"] = dict(EXCERPT)
    return params  # validate keeps its defaults: scheme auto, max_duration_s 3600


@pytest.fixture(scope="module")
def built(tmp_path_factory, pipeline_kit) -> tuple[Path, str]:
    root = tmp_path_factory.mktemp("own-collection")
    pipeline_kit.copy_repo(root, lambda p: _own_params(p, pipeline_kit))
    write_tree(root / SOURCE)
    proc = pipeline_kit.dvc(root, "repro", merge_output=True)
    return root, proc.stdout


def test_every_stage_runs_on_full_length_mixed_format_tracks(built) -> None:
    root, output = built
    stages = set(yaml.safe_load((root / "dvc.yaml").read_text())["stages"])
    assert set(re.findall(r"Running stage '([^']+)'", output)) == stages
    params = yaml.safe_load((root / "params.yaml").read_text())
    assert params["validate"]["max_duration_s"] >= 3600  # the default, untouched
    raw = pd.read_csv(root / "data/raw/manifest.csv")
    assert {Path(p).suffix for p in raw["path"]} == {".ogg", ".mp3", ".flac", ".wav"}
    metrics = json.loads((root / "reports/metrics.json").read_text())
    assert {"cnn", "crnn"} <= set(metrics)


def test_no_track_is_quarantined_and_auto_falls_back_to_stratified(built) -> None:
    root, output = built
    quarantine = pd.read_csv(root / "reports/validation/quarantine.csv")
    assert quarantine.empty, quarantine.to_string()
    summary = json.loads((root / "reports/validation/summary.json").read_text())
    assert summary["n_accepted"] == len(TRACKS) and summary["n_quarantined"] == 0
    assert summary["scheme"] == "stratified"
    assert summary["scheme_reason"].startswith("auto: none of the 8 track ids")
    assert "so the stratified split" in output  # the logged notice
    validated = pd.read_csv(root / "data/validated/manifest.csv")
    assert validated["duration_s"].between(40.0, 60.0).all()
    assert set(validated["sample_rate"]) == {22050, 32000, 44100, 48000}
    assert set(validated["channels"]) == {1, 2}


def test_the_split_is_per_track_and_each_track_gives_its_excerpts(built) -> None:
    root, _ = built
    validated = pd.read_csv(root / "data/validated/manifest.csv", dtype={"track_id": str})
    split_of = validated.set_index("track_id")["split"]
    assert validated["track_id"].is_unique and set(split_of) == {"train", "val", "test"}

    index = pd.read_csv(root / "data/features/index.csv", dtype={"track_id": str})
    assert set(index["track_id"]) == set(split_of.index)
    per_track = index.groupby("track_id")["split"].agg(["nunique", "first"])
    assert (per_track["nunique"] == 1).all()  # no track id in two splits
    assert (per_track["first"] == split_of[per_track.index]).all()

    excerpts = pd.read_csv(root / "data/features/excerpts.csv", dtype={"track_id": str})
    assert (excerpts.groupby("track_id").size() == EXCERPT["count"]).all()
    assert set(excerpts["track_id"]) == set(split_of.index)
    assert (excerpts["length_s"] == EXCERPT["length_s"]).all()
    # A 6-s excerpt is 259 STFT frames; 3-s segments are 130 frames at a 65-frame hop: 2 each.
    assert (excerpts["n_segments"] == 2).all()
    assert (index.groupby("track_id").size() == 2 * EXCERPT["count"]).all()
    # Spread over the track: the last excerpt starts in its final third.
    durations = validated.set_index("track_id")["duration_s"]
    last = excerpts[excerpts["excerpt"] == EXCERPT["count"] - 1].set_index("track_id")
    assert (last["start_s"] > durations[last.index] * 2 / 3).all()

    # Scored per track: one confusion row per test track.
    n_test = int((validated["split"] == "test").sum())
    for arch in ("cnn", "crnn"):
        rows = json.loads((root / f"reports/evaluate/confusion_{arch}.json").read_text())
        assert len(rows) == n_test
