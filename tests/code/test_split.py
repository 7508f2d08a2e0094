"""The per-track split: a seeded hash of each track id, and torchaudio's filtered GTZAN lists."""

from __future__ import annotations

import hashlib
import random
import struct
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
from torchaudio.datasets.gtzan import filtered_test, filtered_train, filtered_valid

from genreflow.core.config import ConfigError, DataParams, Params, SplitParams, ValidateParams
from genreflow.core.paths import Layout
from genreflow.validation import ValidationFailed, validate
from genreflow.validation.split import (
    GTZAN_EXCLUDED_REASON,
    gtzan_split,
    resolve_scheme,
    split_of_track,
    stable_split,
    track_unit,
)


def _tracks(per_genre: dict[str, int]) -> list[str]:
    return [f"{genre}.{i:05d}" for genre, n in per_genre.items() for i in range(n)]


def test_split_rule_is_a_seeded_hash_of_the_track_id() -> None:
    """Pin the documented rule: changing it would silently reshuffle every user's split."""
    for track in _tracks({"blues": 30, "jazz": 30}):
        digest = hashlib.sha256(f"7:{track}".encode()).digest()
        u = int.from_bytes(digest[:8], "big") / 2**64
        assert track_unit(7, track) == u
        expected = "test" if u < 0.2 else "val" if u < 0.5 else "train"
        assert split_of_track(track, 0.3, 0.2, seed=7) == expected


def test_removing_any_track_moves_no_other_track() -> None:
    # The case: 2 genres x 60, one blues file quarantined. The old per-genre shuffle
    # moved 5 of the 24 new test clips out of training.
    tracks = _tracks({"blues": 60, "jazz": 60})
    full = stable_split(tracks, 0.2, 0.2, seed=7)
    for removed in tracks:
        rest = stable_split([t for t in tracks if t != removed], 0.2, 0.2, seed=7)
        moved = [t for t in rest if rest[t] != full[t]]
        assert moved == [], f"removing {removed} moved {moved}"
        assert set(rest) == set(tracks) - {removed}


def test_adding_tracks_keeps_every_old_track_in_its_split() -> None:
    # 60 -> 70 clips per genre: before, 7 of the 28 test clips had been training clips.
    old = stable_split(_tracks({"blues": 60, "jazz": 60}), 0.2, 0.2, seed=7)
    new = stable_split(_tracks({"blues": 70, "jazz": 70}), 0.2, 0.2, seed=7)
    assert {t: new[t] for t in old} == old
    was_training = [t for t, s in new.items() if s == "test" and old.get(t) == "train"]
    assert was_training == []
    # A new genre leaves the old genres alone too.
    wider = stable_split(_tracks({"blues": 60, "jazz": 60, "rock": 60}), 0.2, 0.2, seed=7)
    assert {t: wider[t] for t in old} == old


def test_split_depends_on_the_seed() -> None:
    tracks = _tracks({"blues": 60, "jazz": 60})
    first = stable_split(tracks, 0.2, 0.2, seed=7)
    assert stable_split(tracks, 0.2, 0.2, seed=7) == first
    other = stable_split(tracks, 0.2, 0.2, seed=8)
    changed = sum(first[t] != other[t] for t in tracks)
    # Two independent draws with p = (0.6, 0.2, 0.2) disagree on 56% of tracks on average.
    assert 0.4 * len(tracks) < changed < 0.75 * len(tracks)


def test_realised_fractions_match_params() -> None:
    """Proportions hold in expectation, overall and per genre (binomial spread, not exact)."""
    genres = [f"g{k}" for k in range(10)]
    tracks = _tracks(dict.fromkeys(genres, 200))  # 2,000 tracks
    split = stable_split(tracks, 0.2, 0.1, seed=3)
    table = pd.DataFrame({"genre": [t.split(".")[0] for t in tracks], "split": split.values()})
    overall = table["split"].value_counts(normalize=True)
    # One binomial standard deviation at n = 2000 is <= 0.009; allow about 3.
    assert overall["train"] == pytest.approx(0.7, abs=0.03)
    assert overall["val"] == pytest.approx(0.2, abs=0.03)
    assert overall["test"] == pytest.approx(0.1, abs=0.03)
    shares = table.groupby("genre")["split"].value_counts(normalize=True).unstack(fill_value=0)
    # Per genre (n = 200) one standard deviation is <= 0.033; allow about 3.5.
    for genre in genres:
        assert shares.loc[genre, "train"] == pytest.approx(0.7, abs=0.115), genre
        assert shares.loc[genre, "val"] == pytest.approx(0.2, abs=0.115), genre
        assert shares.loc[genre, "test"] == pytest.approx(0.1, abs=0.115), genre


def test_split_does_not_depend_on_input_order() -> None:
    tracks = _tracks({"a": 60, "b": 60, "c": 60})
    first = stable_split(tracks, 0.2, 0.2, seed=7)
    shuffled = list(tracks)
    random.Random(0).shuffle(shuffled)
    assert stable_split(shuffled, 0.2, 0.2, seed=7) == first
    assert stable_split(reversed(tracks), 0.2, 0.2, seed=7) == first
    # Alone or among others, a track gets the same split.
    assert all(stable_split([t], 0.2, 0.2, seed=7) == {t: first[t]} for t in tracks[:20])


def test_zero_fractions_leave_their_split_empty() -> None:
    tracks = _tracks({"a": 100})
    assert set(stable_split(tracks, 0.0, 0.2, seed=1).values()) == {"train", "test"}
    assert set(stable_split(tracks, 0.2, 0.0, seed=1).values()) == {"train", "val"}

    # Val is carved after test, so changing val_fraction never moves a track in or out of test.
    def test_set(val_fraction: float) -> set[str]:
        split = stable_split(tracks, val_fraction, 0.2, seed=1)
        return {t for t, s in split.items() if s == "test"}

    assert test_set(0.1) == test_set(0.4)


@pytest.mark.parametrize(("val", "test"), [(0.5, 0.5), (-0.1, 0.2), (0.7, 0.4)])
def test_stable_split_rejects_bad_fractions(val: float, test: float) -> None:
    with pytest.raises(ConfigError, match="val_fraction"):
        stable_split(["a.00000"], val, test, seed=0)


def test_resolve_scheme() -> None:
    assert resolve_scheme("auto", "synthetic") == "stratified"
    assert resolve_scheme("auto", "local") == "gtzan"
    assert resolve_scheme("auto", "url") == "gtzan"
    assert resolve_scheme("stratified", "url") == "stratified"
    with pytest.raises(ConfigError, match="scheme"):
        resolve_scheme("random", "local")


def _outside_lists(genre: str) -> str:
    listed = set(filtered_train) | set(filtered_valid) | set(filtered_test)
    return next(f"{genre}.{i:05d}" for i in range(100) if f"{genre}.{i:05d}" not in listed)


def test_gtzan_split_uses_torchaudio_lists() -> None:
    outside = _outside_lists("pop")
    got = gtzan_split([filtered_test[0], filtered_valid[0], filtered_train[0], outside])
    assert got == {
        filtered_test[0]: "test",
        filtered_valid[0]: "val",
        filtered_train[0]: "train",
        outside: None,
    }
    assert len({*filtered_train, *filtered_valid, *filtered_test}) == 930


# ----------------------------------------------------------------- gtzan scheme through validate()
SR = 8000


def _first(ids: list[str], genre: str, skip: str = "") -> str:
    return next(t for t in ids if t.startswith(f"{genre}.") and t != skip)


def _build_gtzan_like(root: Path, corrupt_jazz_00054: bool) -> dict[str, str]:
    """Two genres, one clip from each filtered list, one track outside them, and jazz.00054."""
    raw = root / "data" / "raw"
    chosen = {
        "in_test": _first(filtered_test, "blues"),
        "in_val": _first(filtered_valid, "blues"),
        "in_train": _first(filtered_train, "blues"),
        "outside": _outside_lists("jazz"),  # every blues track is listed
        "jazz_test": _first(filtered_test, "jazz"),
        "jazz_val": _first(filtered_valid, "jazz"),
        "jazz_train": _first(filtered_train, "jazz", skip="jazz.00054"),
        "jazz_54": "jazz.00054",
    }
    assert "jazz.00054" in filtered_train
    rows = []
    for i, track in enumerate(chosen.values()):
        genre = track.split(".")[0]
        path = raw / genre / f"{track}.wav"
        path.parent.mkdir(parents=True, exist_ok=True)
        if track == "jazz.00054" and corrupt_jazz_00054:
            path.write_bytes(b"RIFF" + struct.pack("<I", 9000) + b"WAVE" + bytes(range(256)) * 30)
        else:
            t = np.arange(int(3.5 * SR)) / SR
            sf.write(path, (0.3 * np.sin(2 * np.pi * (200 + 30 * i) * t)).astype(np.float32), SR)
        data = path.read_bytes()
        rows.append(
            {
                "path": path.relative_to(root).as_posix(),
                "genre": genre,
                "track_id": track,
                "bytes": len(data),
                "sha256": hashlib.sha256(data).hexdigest(),
            }
        )
    pd.DataFrame(rows).to_csv(raw / "manifest.csv", index=False)
    return chosen


def _gtzan_params() -> Params:
    # source "local" with scheme "auto" means the GTZAN lists.
    return Params(data=DataParams(source="local", genres=("blues", "jazz")))


@pytest.mark.parametrize("corrupt", [True, False], ids=["corrupt-jazz54", "valid-jazz54"])
def test_gtzan_scheme_through_validate(tmp_path: Path, corrupt: bool) -> None:
    chosen = _build_gtzan_like(tmp_path, corrupt_jazz_00054=corrupt)
    layout = Layout.from_root(tmp_path)
    summary = validate(_gtzan_params(), layout, progress=False, workers=1)
    assert summary.scheme == "gtzan"

    manifest = pd.read_csv(layout.validated_manifest).set_index("track_id")
    assert manifest.loc[chosen["in_test"], "split"] == "test"
    assert manifest.loc[chosen["in_val"], "split"] == "val"
    assert manifest.loc[chosen["in_train"], "split"] == "train"
    assert chosen["outside"] not in manifest.index

    q = pd.read_csv(layout.validation_reports / "quarantine.csv").set_index("track_id")
    assert q.loc[chosen["outside"], "reason"] == GTZAN_EXCLUDED_REASON
    assert q.loc[chosen["outside"], "status"] == "excluded"
    assert summary.n_excluded == 1
    if corrupt:
        # Quarantined because it does not decode, not because of its name.
        assert q.loc["jazz.00054", "status"] == "quarantined"
        assert q.loc["jazz.00054", "reason"].startswith("not decodable audio (")
        assert GTZAN_EXCLUDED_REASON not in q.loc["jazz.00054", "reason"]
        assert summary.n_quarantined == 1
        assert summary.quarantine_share == pytest.approx(1 / 7, abs=1e-6)
    else:
        assert manifest.loc["jazz.00054", "split"] == "train"
        assert "jazz.00054" not in q.index
        assert summary.n_quarantined == 0


def test_gtzan_scheme_rejects_data_that_is_not_gtzan(tmp_path: Path) -> None:
    raw = tmp_path / "data" / "raw" / "blues"
    raw.mkdir(parents=True)
    sf.write(raw / "mysong.wav", np.zeros(SR * 4, np.float32), SR)
    pd.DataFrame(
        [
            {
                "path": "data/raw/blues/mysong.wav",
                "genre": "blues",
                "track_id": "mysong",
                "bytes": 0,
                "sha256": "",
            }
        ]
    ).to_csv(tmp_path / "data" / "raw" / "manifest.csv", index=False)
    params = Params(
        data=DataParams(source="local", genres=("blues",)),
        validate=ValidateParams(split=SplitParams(scheme="gtzan")),
    )
    with pytest.raises(ValidationFailed, match="scheme: stratified"):
        validate(params, Layout.from_root(tmp_path), progress=False, workers=1)


# ------------------------------------------------------------ stratified scheme through validate()
def _write_raw(root: Path, per_genre: dict[str, int], folder: str, silent: str = "") -> None:
    """``per_genre`` clips under ``data/raw/<folder>/<genre>/``; ``silent`` names one to zero."""
    rows = []
    for k, track in enumerate(_tracks(per_genre)):
        genre = track.split(".")[0]
        path = root / "data" / "raw" / folder / genre / f"{track}.wav"
        path.parent.mkdir(parents=True, exist_ok=True)
        t = np.arange(int(3.5 * SR)) / SR
        wave = 0.0 * t if track == silent else 0.3 * np.sin(2 * np.pi * (100 + 7 * k) * t)
        sf.write(path, wave.astype(np.float32), SR, subtype="PCM_16")
        data = path.read_bytes()
        rows.append(
            {
                "path": path.relative_to(root).as_posix(),
                "genre": genre,
                "track_id": track,
                "bytes": len(data),
                "sha256": hashlib.sha256(data).hexdigest(),
            }
        )
    pd.DataFrame(rows).to_csv(root / "data" / "raw" / "manifest.csv", index=False)


def _stratified_splits(root: Path) -> dict[str, str]:
    params = Params(
        data=DataParams(source="local", genres=("blues", "jazz")),
        validate=ValidateParams(split=SplitParams(scheme="stratified")),
    )
    layout = Layout.from_root(root)
    validate(params, layout, progress=False, workers=1)
    manifest = pd.read_csv(layout.validated_manifest)
    return dict(zip(manifest["track_id"], manifest["split"], strict=True))


def test_quarantined_file_or_other_layout_moves_no_track_through_validate(tmp_path: Path) -> None:
    """The issue's case end to end: 2 genres x 60, one blues file quarantined on a re-fetch that
    also used the other GTZAN layout (other paths, same track ids)."""
    _write_raw(tmp_path / "before", {"blues": 60, "jazz": 60}, folder="genres")
    before = _stratified_splits(tmp_path / "before")
    _write_raw(
        tmp_path / "after",
        {"blues": 60, "jazz": 60},
        folder="Data/genres_original",
        silent="blues.00017",
    )
    after = _stratified_splits(tmp_path / "after")
    assert set(after) == set(before) - {"blues.00017"}
    assert {t: s for t, s in before.items() if t in after} == after
    assert set(after.values()) == {"train", "val", "test"}
