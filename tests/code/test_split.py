"""The per-track split: seeded stratified split, and torchaudio's filtered GTZAN lists."""

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

from genreflow.config import ConfigError, DataParams, Params, SplitParams, ValidateParams
from genreflow.paths import Layout
from genreflow.validation import ValidationFailed, validate
from genreflow.validation.split import (
    GTZAN_EXCLUDED_REASON,
    gtzan_split,
    resolve_scheme,
    split_counts,
    stratified_split,
)


@pytest.mark.parametrize(
    ("n", "val", "test", "expected"),
    [
        (60, 0.2, 0.2, (36, 12, 12)),
        (100, 0.1, 0.3, (60, 10, 30)),
        (1, 0.2, 0.2, (1, 0, 0)),
        (2, 0.2, 0.2, (2, 0, 0)),
        (3, 0.2, 0.2, (1, 1, 1)),
        (5, 0.2, 0.2, (3, 1, 1)),
        (3, 0.2, 0.0, (2, 1, 0)),
        (4, 0.45, 0.45, (1, 1, 2)),
    ],
)
def test_split_counts(n: int, val: float, test: float, expected: tuple[int, int, int]) -> None:
    assert split_counts(n, val, test) == expected


@pytest.mark.parametrize(("val", "test"), [(0.5, 0.5), (-0.1, 0.2), (0.7, 0.4)])
def test_split_counts_rejects_bad_fractions(val: float, test: float) -> None:
    with pytest.raises(ConfigError, match="val_fraction"):
        split_counts(10, val, test)


def _clips(per_genre: dict[str, int]) -> tuple[list[str], list[str]]:
    paths, genres = [], []
    for genre, n in per_genre.items():
        for i in range(n):
            paths.append(f"data/raw/{genre}/{genre}.{i:05d}.wav")
            genres.append(genre)
    return paths, genres


def test_stratified_split_is_deterministic_and_order_free() -> None:
    paths, genres = _clips({"a": 60, "b": 60, "c": 60})
    first = stratified_split(paths, genres, 0.2, 0.2, seed=7)
    assert stratified_split(paths, genres, 0.2, 0.2, seed=7) == first
    pairs = list(zip(paths, genres, strict=True))
    random.Random(0).shuffle(pairs)
    shuffled = stratified_split([p for p, _ in pairs], [g for _, g in pairs], 0.2, 0.2, seed=7)
    assert shuffled == first
    other = stratified_split(paths, genres, 0.2, 0.2, seed=8)
    assert other != first
    # A genre's split depends only on its own clips.
    alone = stratified_split(paths[:60], genres[:60], 0.2, 0.2, seed=7)
    assert alone == {p: s for p, s in first.items() if p in alone}


def test_stratified_split_proportions_per_genre() -> None:
    paths, genres = _clips({"a": 60, "b": 50, "c": 10})
    split = stratified_split(paths, genres, 0.2, 0.1, seed=3)
    table = pd.DataFrame({"genre": genres, "split": [split[p] for p in paths]})
    counts = table.groupby(["genre", "split"]).size().unstack(fill_value=0)
    assert counts.loc["a"].to_dict() == {"test": 6, "train": 42, "val": 12}
    assert counts.loc["b"].to_dict() == {"test": 5, "train": 35, "val": 10}
    assert counts.loc["c"].to_dict() == {"test": 1, "train": 7, "val": 2}


def test_stratified_split_small_genres() -> None:
    paths, genres = _clips({"one": 1, "two": 2, "three": 3})
    split = stratified_split(paths, genres, 0.2, 0.2, seed=0)
    by_genre: dict[str, list[str]] = {}
    for p, g in zip(paths, genres, strict=True):
        by_genre.setdefault(g, []).append(split[p])
    assert by_genre["one"] == ["train"]
    assert "train" in by_genre["two"]
    assert sorted(by_genre["three"]) == ["test", "train", "val"]


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
