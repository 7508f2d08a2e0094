"""Manifest rows, and fetch's dispatch and all-or-nothing output (synthetic source faked)."""

from __future__ import annotations

import hashlib
import sys
import types
from collections.abc import Sequence
from pathlib import Path

import pytest

from genreflow.core.config import DataParams, SyntheticParams
from genreflow.core.hashing import file_sha256
from genreflow.core.paths import Layout
from genreflow.sources.manifest import (
    MANIFEST_COLUMNS,
    read_manifest,
    scan_raw_dir,
    write_manifest,
)
from genreflow.sources.stage import fetch


def _write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def test_scan_rows_sizes_hashes_and_order(tmp_path: Path) -> None:
    raw = tmp_path / "tmp_raw"
    _write(raw / "genres/rock/rock.00001.wav", b"b" * 10)
    _write(raw / "genres/blues/blues.00000.au", b"a" * 3)
    _write(raw / "genres/blues/._blues.00000.au", b"junk")  # hidden: not a row
    _write(raw / "genres/.cache/x.wav", b"junk")  # hidden dir: not a genre
    _write(raw / "genres/README", b"not in a genre folder")
    rows = scan_raw_dir(raw, "data/raw", progress=False)
    assert rows == [
        {
            "path": "data/raw/genres/blues/blues.00000.au",
            "genre": "blues",
            "track_id": "blues.00000",
            "bytes": 3,
            "sha256": hashlib.sha256(b"aaa").hexdigest(),
        },
        {
            "path": "data/raw/genres/rock/rock.00001.wav",
            "genre": "rock",
            "track_id": "rock.00001",
            "bytes": 10,
            "sha256": hashlib.sha256(b"b" * 10).hexdigest(),
        },
    ]


def test_write_read_round_trip_and_bad_header(tmp_path: Path) -> None:
    raw = tmp_path / "r"
    _write(raw / "genres/jazz/jazz.00054.wav", b"not riff")
    rows = scan_raw_dir(raw, "data/raw", progress=False)
    write_manifest(tmp_path / "m.csv", rows)
    assert read_manifest(tmp_path / "m.csv") == rows
    assert (tmp_path / "m.csv").read_text().splitlines()[0] == ",".join(MANIFEST_COLUMNS)
    (tmp_path / "bad.csv").write_text("file,label\nx,y\n")
    with pytest.raises(ValueError, match=r"bad\.csv.*columns"):
        read_manifest(tmp_path / "bad.csv")


# --------------------------------------------------------------------------- fetch dispatch
@pytest.fixture
def fake_synthetic(monkeypatch: pytest.MonkeyPatch) -> list[dict]:
    """Stand-in for genreflow.sources.synthetic.corpus that records its calls."""
    calls: list[dict] = []

    def generate_corpus(
        params: SyntheticParams,
        genres: Sequence[str],
        out_dir: Path,
        progress: bool = True,
        workers: int = 1,
    ) -> list[Path]:
        calls.append(
            {"params": params, "genres": tuple(genres), "out_dir": out_dir, "workers": workers}
        )
        if params.seed < 0:
            _write(out_dir / "genres" / genres[0] / "half.wav", b"partial")
            raise RuntimeError("generator crashed")
        written = []
        for g in genres:
            for i in range(params.clips_per_genre):
                written.append(_write(out_dir / "genres" / g / f"{g}.{i:05d}.wav", g.encode() * i))
        return written

    module = types.ModuleType("genreflow.sources.synthetic.corpus")
    module.generate_corpus = generate_corpus  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "genreflow.sources.synthetic.corpus", module)
    return calls


def test_fetch_synthetic_builds_raw_dir_and_manifest(tmp_path: Path, fake_synthetic) -> None:
    layout = Layout(tmp_path)
    params = DataParams(genres=("jazz", "blues"), synthetic=SyntheticParams(clips_per_genre=2))
    assert fetch(params, layout, progress=False) == layout.raw_manifest
    (call,) = fake_synthetic
    assert call["genres"] == ("jazz", "blues") and call["params"].clips_per_genre == 2
    assert call["out_dir"] != layout.raw_dir  # written to a temp dir, then swapped in
    rows = read_manifest(layout.raw_manifest)
    assert [r["path"] for r in rows] == [
        "data/raw/genres/blues/blues.00000.wav",
        "data/raw/genres/blues/blues.00001.wav",
        "data/raw/genres/jazz/jazz.00000.wav",
        "data/raw/genres/jazz/jazz.00001.wav",
    ]
    for r in rows:
        assert r["sha256"] == file_sha256(layout.root / r["path"])
    assert [p.name for p in (tmp_path / "data").iterdir()] == ["raw"]  # no temp dirs left


def test_failed_fetch_leaves_previous_raw_dir_untouched(tmp_path: Path, fake_synthetic) -> None:
    layout = Layout(tmp_path)
    _write(layout.raw_dir / "manifest.csv", b"old manifest")
    _write(layout.raw_dir / "genres/blues/blues.00000.wav", b"old audio")
    bad = DataParams(genres=("blues",), synthetic=SyntheticParams(seed=-1))
    with pytest.raises(RuntimeError, match="generator crashed"):
        fetch(bad, layout, progress=False)
    assert (layout.raw_dir / "manifest.csv").read_bytes() == b"old manifest"
    assert sorted(p.name for p in (layout.raw_dir / "genres/blues").iterdir()) == [
        "blues.00000.wav"
    ]
    assert [p.name for p in (tmp_path / "data").iterdir()] == ["raw"]


def test_failed_first_fetch_creates_no_raw_dir(tmp_path: Path, fake_synthetic) -> None:
    layout = Layout(tmp_path)
    with pytest.raises(RuntimeError):
        fetch(DataParams(synthetic=SyntheticParams(seed=-1)), layout, progress=False)
    assert not layout.raw_dir.exists()
    assert list((tmp_path / "data").iterdir()) == []


def test_empty_source_is_an_error(tmp_path: Path, fake_synthetic) -> None:
    layout = Layout(tmp_path)
    params = DataParams(genres=("blues",), synthetic=SyntheticParams(clips_per_genre=0))
    with pytest.raises(ValueError, match="no audio files"):
        fetch(params, layout, progress=False)
    assert not layout.raw_dir.exists()


def test_real_synthetic_generator_through_fetch(tmp_path: Path) -> None:
    """With the real generator (another module), the manifest still covers every clip."""
    synthetic = pytest.importorskip("genreflow.sources.synthetic.corpus")
    if not hasattr(synthetic, "generate_corpus"):
        pytest.skip("genreflow.sources.synthetic.corpus.generate_corpus not written yet")
    layout = Layout(tmp_path)
    params = DataParams(
        genres=("blues", "metal"),
        synthetic=SyntheticParams(clips_per_genre=1, duration_s=1.0, sample_rate=8000),
    )
    rows = read_manifest(fetch(params, layout, progress=False))
    assert {r["genre"] for r in rows} == {"blues", "metal"}
    assert all(r["bytes"] > 0 and r["track_id"].startswith(r["genre"]) for r in rows)
