"""fetch(source=local): both GTZAN layouts, as dir/tar.gz/zip, give the same manifest."""

from __future__ import annotations

import hashlib
import logging
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from genreflow.core.config import DataParams, LocalParams
from genreflow.core.paths import Layout
from genreflow.sources.archive import UnsupportedArchiveError
from genreflow.sources.local import SourceError, find_gtzan_tree
from genreflow.sources.manifest import MANIFEST_COLUMNS, read_manifest
from genreflow.sources.stage import fetch

GENRES = ("blues", "classical")
# polka is not in GENRES: its file must still be fetched (validate quarantines it)
TRACKS = {
    "blues": ["blues.00000", "blues.00001"],
    "classical": ["classical.00000"],
    "polka": ["polka.00000"],
}
BROKEN = "blues.00002.WAV"  # audio by name (upper-case suffix), not audio inside
EXPECTED = sorted(
    [(g, t) for g, ts in TRACKS.items() for t in ts] + [("blues", "blues.00002")],
)


def _tone(path: Path, freq: float) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(0.1 * 8000)) / 8000
    sf.write(path, (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32), 8000)


def make_marsyas(root: Path) -> Path:
    """genres/<genre>/<genre>.NNNNN.au, one .wav among them, plus the junk real copies carry."""
    g = root / "genres"
    for i, (genre, tracks) in enumerate(TRACKS.items()):
        for j, track in enumerate(tracks):
            ext = ".wav" if track == "blues.00001" else ".au"
            _tone(g / genre / f"{track}{ext}", 220.0 * (i + 1) + 10 * j)
    (g / "blues" / BROKEN).write_bytes(b"this is not a RIFF file")
    (g / "blues" / "._blues.00000.au").write_bytes(b"\x00\x05\x16\x07 AppleDouble")
    (g / "blues" / "notes.txt").write_text("not audio by name: skipped")
    (g / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    (g / "input.mf").write_text("genres/blues/blues.00000.au\tblues\n")
    (g / ".hidden_genre").mkdir()
    _tone(g / ".hidden_genre" / "x.wav", 100.0)
    return root


def make_kaggle(root: Path) -> Path:
    """Data/genres_original/<genre>/*.wav next to images_original/ and feature CSVs."""
    d = root / "Data"
    for i, (genre, tracks) in enumerate(TRACKS.items()):
        for j, track in enumerate(tracks):
            _tone(d / "genres_original" / genre / f"{track}.wav", 220.0 * (i + 1) + 10 * j)
        (d / "images_original" / genre).mkdir(parents=True, exist_ok=True)
        (d / "images_original" / genre / f"{genre}00000.png").write_bytes(b"\x89PNG fake")
    (d / "genres_original" / "blues" / BROKEN).write_bytes(b"this is not a RIFF file")
    (d / "features_30_sec.csv").write_text("filename,label\nblues.00000.wav,blues\n")
    (root / "__MACOSX" / "Data" / "genres_original" / "blues").mkdir(parents=True)
    (root / "__MACOSX" / "Data" / "genres_original" / "blues" / "._blues.00000.wav").write_bytes(
        b"junk"
    )
    return root


def pack(src: Path, container: str, out_dir: Path, prefix: str = "") -> Path:
    """Archive every file under ``src`` (optionally under a top-level folder ``prefix``)."""
    files = sorted(p for p in src.rglob("*") if p.is_file())
    if container == "tar.gz":
        arc = out_dir / "gtzan.tar.gz"
        with tarfile.open(arc, "w:gz") as tf:
            for f in files:
                tf.add(f, arcname=prefix + f.relative_to(src).as_posix())
    else:
        arc = out_dir / "gtzan.zip"
        with zipfile.ZipFile(arc, "w", zipfile.ZIP_DEFLATED) as zf:
            for f in files:
                zf.write(f, arcname=prefix + f.relative_to(src).as_posix())
    return arc


def tree_digest(root: Path) -> dict[str, str]:
    """Every entry under ``root`` (hidden ones too) -> content hash; dirs -> 'dir'."""
    out = {}
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root).as_posix()
        out[rel] = "dir" if p.is_dir() else hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def _params(path: str | Path) -> DataParams:
    return DataParams(source="local", genres=GENRES, local=LocalParams(path=str(path)))


@pytest.fixture
def layout(tmp_path: Path) -> Layout:
    root = tmp_path / "repo"
    root.mkdir()
    return Layout(root)


@pytest.mark.parametrize("container", ["dir", "tar.gz", "zip"])
@pytest.mark.parametrize("kind", ["marsyas", "kaggle"])
def test_layouts_and_containers_give_the_same_manifest(
    tmp_path: Path, layout: Layout, kind: str, container: str, caplog: pytest.LogCaptureFixture
) -> None:
    src = (make_marsyas if kind == "marsyas" else make_kaggle)(tmp_path / "src")
    source = src if container == "dir" else pack(src, container, tmp_path)
    before = tree_digest(tmp_path)

    with caplog.at_level(logging.WARNING):
        manifest = fetch(_params(source), layout, progress=False)

    assert manifest == layout.raw_manifest
    rows = read_manifest(manifest)
    assert [(r["genre"], r["track_id"]) for r in rows] == EXPECTED
    assert [r["path"] for r in rows] == sorted(r["path"] for r in rows)
    for r in rows:
        f = layout.root / r["path"]
        assert r["path"].startswith("data/raw/genres/") and f.is_file()
        assert r["bytes"] == f.stat().st_size
        assert r["sha256"] == hashlib.sha256(f.read_bytes()).hexdigest()
    # original names and extensions are kept; the broken file is copied byte for byte
    names = {Path(r["path"]).name for r in rows}
    if kind == "marsyas":
        assert {"blues.00000.au", "blues.00001.wav", "polka.00000.au"} <= names
    else:
        assert {"blues.00000.wav", "classical.00000.wav"} <= names
    assert (layout.raw_dir / "genres/blues" / BROKEN).read_bytes() == b"this is not a RIFF file"
    # nothing but genres/ and the manifest in data/raw, and no scratch left behind
    assert sorted(p.name for p in layout.raw_dir.iterdir()) == ["genres", "manifest.csv"]
    assert not any(layout.downloads_dir.glob(".extract-*"))
    assert "polka" in caplog.text  # the unknown genre folder is reported
    # the user's copy is untouched
    after = tree_digest(tmp_path)
    assert {k: v for k, v in after.items() if not k.startswith("repo/")} == before


def test_manifest_header_and_format(tmp_path: Path, layout: Layout) -> None:
    make_marsyas(tmp_path / "src")
    fetch(_params(tmp_path / "src"), layout, progress=False)
    lines = layout.raw_manifest.read_text().splitlines()
    assert lines[0] == ",".join(MANIFEST_COLUMNS)
    assert lines[1].startswith("data/raw/genres/blues/blues.00000.au,blues,blues.00000,")


@pytest.mark.parametrize(
    ("kind", "prefix"), [("marsyas", "GTZAN/"), ("kaggle", "archive/")], ids=["marsyas", "kaggle"]
)
def test_archive_nested_one_level(tmp_path: Path, layout: Layout, kind: str, prefix: str) -> None:
    src = (make_marsyas if kind == "marsyas" else make_kaggle)(tmp_path / "src")
    arc = pack(src, "tar.gz", tmp_path, prefix=prefix)
    rows = read_manifest(fetch(_params(arc), layout, progress=False))
    assert [(r["genre"], r["track_id"]) for r in rows] == EXPECTED


def test_pointing_at_the_genre_folders_directly(tmp_path: Path, layout: Layout) -> None:
    src = make_kaggle(tmp_path / "src")
    tree = find_gtzan_tree(src / "Data" / "genres_original")
    assert tree.kind == "kaggle"
    rows = read_manifest(fetch(_params(src / "Data" / "genres_original"), layout, progress=False))
    assert [(r["genre"], r["track_id"]) for r in rows] == EXPECTED


def test_relative_path_is_resolved_against_the_repo_root(layout: Layout) -> None:
    make_marsyas(layout.root / "external" / "gtzan")
    rows = read_manifest(fetch(_params("external/gtzan"), layout, progress=False))
    assert len(rows) == len(EXPECTED)


def test_missing_path_is_a_clear_error(tmp_path: Path, layout: Layout) -> None:
    with pytest.raises(SourceError, match=r"nowhere/gtzan.*does not exist"):
        fetch(_params(tmp_path / "nowhere" / "gtzan"), layout, progress=False)
    assert not layout.raw_dir.exists()


def test_empty_path_is_a_clear_error(layout: Layout) -> None:
    with pytest.raises(SourceError, match="data.local.path is empty"):
        fetch(_params(""), layout, progress=False)


def test_no_layout_found_lists_what_was_looked_for(tmp_path: Path, layout: Layout) -> None:
    bad = tmp_path / "music"
    (bad / "mp3s").mkdir(parents=True)
    (bad / "readme.txt").write_text("no genre folders here")
    with pytest.raises(SourceError) as exc:
        fetch(_params(bad), layout, progress=False)
    msg = str(exc.value)
    assert str(bad) in msg and "no GTZAN layout" in msg
    assert "genres/<genre>" in msg and "Data/genres_original/<genre>" in msg


def test_unsupported_archive_type(tmp_path: Path, layout: Layout) -> None:
    rar = tmp_path / "gtzan.rar"
    rar.write_bytes(b"Rar!\x1a\x07\x00 nope")
    with pytest.raises(UnsupportedArchiveError, match=r"gtzan\.rar.*unsupported archive type"):
        fetch(_params(rar), layout, progress=False)
    assert rar.read_bytes() == b"Rar!\x1a\x07\x00 nope"


def test_ambiguous_layouts_are_refused(tmp_path: Path, layout: Layout) -> None:
    src = make_marsyas(tmp_path / "src")
    make_kaggle(src)
    with pytest.raises(SourceError, match="ambiguous"):
        fetch(_params(src), layout, progress=False)


def test_source_inside_the_output_is_refused(layout: Layout) -> None:
    make_marsyas(layout.raw_dir)
    before = tree_digest(layout.raw_dir)
    with pytest.raises(SourceError, match="inside"):
        fetch(_params("data/raw/genres"), layout, progress=False)
    assert tree_digest(layout.raw_dir) == before
