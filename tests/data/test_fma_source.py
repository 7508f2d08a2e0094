"""fetch(source=fma) then validate on a fabricated FMA copy with planted faults (as folders and
as zips): the official split, FMA's genre names as labels, every exclusion with its reason,
and the user's copy never modified. See :mod:`support.fma` for the tree."""

from __future__ import annotations

import csv
import hashlib
import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pandas as pd
import pytest
import yaml

from genreflow.core.config import DataParams, FmaParams, Params
from genreflow.core.paths import Layout
from genreflow.sources.fma import EXCLUSION_COLUMNS, EXCLUSIONS_NAME, _audio_exclusions
from genreflow.sources.fma_files import find_tracks_csv
from genreflow.sources.fma_metadata import (
    Selection,
    genre_label,
    in_subset,
    parse_track_file,
    read_tracks,
    select,
    track_file,
)
from genreflow.sources.local import SourceError
from genreflow.sources.manifest import MANIFEST_COLUMNS, SOURCE_SPLIT, read_manifest
from genreflow.sources.stage import fetch
from genreflow.validation import ValidationFailed, validate
from genreflow.validation.split import choose_scheme, source_split
from support import fma as fab
from support.processes import child_env

REPO = Path(__file__).resolve().parents[2]


def _digest(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="session")
def fma_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The fabricated copy as folders (``<root>/dir``) and as zips (``<root>/zip``)."""
    root = tmp_path_factory.mktemp("fma")
    fab.write_tree(root / "dir")
    fab.zip_tree(root / "dir", root / "zip")
    return root


def _params(path: Path, genres: tuple[str, ...] = fab.GENRES, subset: str = "small") -> Params:
    return Params(
        data=DataParams(source="fma", genres=genres, fma=FmaParams(path=str(path), subset=subset))
    )


def _exclusions(layout: Layout) -> dict[str, str]:
    with open(layout.raw_dir / EXCLUSIONS_NAME, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert rows and tuple(rows[0]) == EXCLUSION_COLUMNS
    assert all(r["reason"] for r in rows)
    return {r["source_path"]: r["kind"] for r in rows}


@pytest.fixture(scope="module")
def fetched(fma_tree: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Layout]:
    """fetch from the folders and from the zips, each into its own repository root."""
    out = {}
    for kind in ("dir", "zip"):
        before = _digest(fma_tree / kind)
        layout = Layout(tmp_path_factory.mktemp(f"repo-{kind}"))
        assert fetch(_params(fma_tree / kind).data, layout, progress=False)
        assert _digest(fma_tree / kind) == before, "the user's FMA copy was modified"
        out[kind] = layout
    return out


@pytest.mark.parametrize("kind", ["dir", "zip"])
def test_fetch_keeps_the_subsets_labelled_tracks_with_the_official_split(fetched, kind) -> None:
    layout = fetched[kind]
    rows = read_manifest(layout.raw_manifest)
    got = {r["track_id"]: (r["genre"], r["source_split"]) for r in rows}
    assert got == fab.EXPECTED.fetched
    for r in rows:
        assert r["path"] == f"data/raw/genres/{r['genre']}/{r['track_id']}.mp3"
    header = layout.raw_manifest.read_text().splitlines()[0]
    assert header == ",".join([*MANIFEST_COLUMNS, SOURCE_SPLIT])
    assert sorted(p.name for p in layout.raw_dir.iterdir()) == [
        "excluded.csv",
        "genres",
        "manifest.csv",
    ]


@pytest.mark.parametrize("kind", ["dir", "zip"])
def test_fetch_reports_every_exclusion_and_nothing_of_other_subsets(fetched, kind) -> None:
    # absent, no genre_top, no split, another subset's file, an unknown id, a non-track
    # name; the medium and large tracks without files are not reported missing
    assert _exclusions(fetched[kind]) == fab.EXPECTED.excluded


def test_folders_and_zips_give_the_same_bytes(fetched) -> None:
    a, b = fetched["dir"], fetched["zip"]
    assert a.raw_manifest.read_bytes() == b.raw_manifest.read_bytes()
    # the same rows; only an absent file's reason differs (fma_small/ or fma_small.zip)
    assert _exclusions(a) == _exclusions(b)


def test_validate_uses_the_official_split_and_quarantines_bad_mp3s(fetched) -> None:
    layout = fetched["dir"]
    summary = validate(_params(Path("unused")), layout, progress=False, workers=1)
    assert summary.scheme == "fma" and "official split" in summary.scheme_reason
    assert summary.passed and summary.n_excluded == 0
    quarantine = pd.read_csv(layout.validation_quarantine, dtype=str)
    reasons = dict(zip(quarantine["track_id"], quarantine["reason"], strict=True))
    assert sorted(reasons) == sorted(fab.EXPECTED.quarantined)
    for tid, start in fab.EXPECTED.quarantined.items():
        assert reasons[tid].startswith(start), reasons[tid]
    accepted = pd.read_csv(layout.validated_manifest, dtype=str)
    want = {t: split for t, (_, split) in fab.EXPECTED.fetched.items() if t not in reasons}
    assert dict(zip(accepted["track_id"], accepted["split"], strict=True)) == want
    assert set(accepted["genre"]) == set(fab.GENRES)


def test_auto_takes_fma_split_only_for_the_fma_source() -> None:
    assert choose_scheme("auto", "fma", ["000002"]).scheme == "fma"
    assert choose_scheme("stratified", "fma", ["000002"]).scheme == "stratified"
    assert choose_scheme("auto", "local", ["blues.00000"]).scheme == "gtzan"
    assert source_split(["a.mp3", "b.mp3"], ["train", "test"]) == {
        "a.mp3": "train",
        "b.mp3": "test",
    }
    with pytest.raises(ValueError, match=r"b\.mp3: source_split is nan"):
        source_split(["a.mp3", "b.mp3"], ["val", float("nan")])


def test_validate_refuses_a_manifest_without_the_fma_split(fetched, tmp_path) -> None:
    layout = Layout(tmp_path)
    layout.raw_dir.mkdir(parents=True)
    manifest = pd.read_csv(fetched["dir"].raw_manifest, dtype=str)
    manifest.drop(columns=[SOURCE_SPLIT]).to_csv(layout.raw_manifest, index=False)
    with pytest.raises(ValidationFailed, match=r"manifest\.csv: has no source_split column"):
        validate(_params(Path("unused")), layout, progress=False, workers=1)


def test_unknown_genre_is_one_line_naming_tracks_csv(fma_tree, tmp_path) -> None:
    layout = Layout(tmp_path)
    with pytest.raises(SourceError) as info:
        fetch(_params(fma_tree / "dir", genres=("hip-hop", "rock")).data, layout, progress=False)
    msg = str(info.value)
    assert "\n" not in msg
    assert str(fma_tree / "dir" / "fma_metadata" / "tracks.csv") in msg
    assert "'Old-Time / Historic' (old-time-historic) not in data.genres" in msg
    assert "data.genres ['rock'] not the genre_top of any track" in msg
    assert "Set data.genres: [hip-hop, old-time-historic]" in msg
    assert not layout.raw_dir.exists()


def test_fma_spelling_in_data_genres_names_the_label_to_use(fma_tree, tmp_path) -> None:
    params = _params(fma_tree / "zip", genres=("Hip-Hop", "Old-Time / Historic"))
    with pytest.raises(SourceError, match=r"Set data\.genres: \[hip-hop, old-time-historic\]"):
        fetch(params.data, Layout(tmp_path), progress=False)


def test_missing_pieces_name_the_path(fma_tree, tmp_path) -> None:
    only_audio = tmp_path / "only_audio"
    (only_audio / "fma_small").mkdir(parents=True)
    with pytest.raises(SourceError, match=r"no fma_metadata/tracks\.csv nor fma_metadata\.zip"):
        fetch(_params(only_audio).data, Layout(tmp_path / "r1"), progress=False)
    with pytest.raises(SourceError, match=r"no fma_medium/ nor fma_medium\.zip"):
        fetch(_params(fma_tree / "dir", subset="medium").data, Layout(tmp_path / "r2"))
    with pytest.raises(SourceError, match=r"data\.fma\.path is not a directory"):
        fetch(_params(tmp_path / "nope").data, Layout(tmp_path / "r3"), progress=False)


def test_not_a_tracks_csv(tmp_path) -> None:
    bad = tmp_path / "fma_metadata" / "tracks.csv"
    bad.parent.mkdir()
    (tmp_path / "fma_small").mkdir()
    bad.write_text("track_id,title\n2,Food\n")
    with pytest.raises(SourceError, match=r"tracks\.csv: not FMA's tracks\.csv"):
        fetch(_params(tmp_path).data, Layout(tmp_path / "repo"), progress=False)


# --------------------------------------------------------------------------- zip damage
def _member_data_offset(archive: Path, name: str) -> int:
    with zipfile.ZipFile(archive) as zf:
        info = zf.getinfo(name)
    with open(archive, "rb") as fh:
        fh.seek(info.header_offset + 26)
        name_len, extra_len = (int.from_bytes(fh.read(2), "little") for _ in range(2))
    return info.header_offset + 30 + name_len + extra_len


def _stored_copy(fma_tree: Path, dest: Path) -> Path:
    """The zips again, stored (not deflated), so bytes can be edited in place."""
    dest.mkdir()
    (dest / "fma_metadata.zip").write_bytes((fma_tree / "zip/fma_metadata.zip").read_bytes())
    with zipfile.ZipFile(dest / "fma_small.zip", "w", zipfile.ZIP_STORED) as zf:
        for f in sorted((fma_tree / "dir/fma_small").rglob("*")):
            zf.write(f, f.relative_to(fma_tree / "dir").as_posix())
    return dest


def test_an_unreadable_zip_member_is_reported_and_skipped(fma_tree, tmp_path) -> None:
    src = _stored_copy(fma_tree, tmp_path / "src")
    archive = src / "fma_small.zip"
    at = _member_data_offset(archive, "fma_small/000/000003.mp3") + 100
    data = bytearray(archive.read_bytes())
    data[at] ^= 0xFF  # the CRC no longer matches
    archive.write_bytes(bytes(data))
    layout = Layout(tmp_path / "repo")
    fetch(_params(src).data, layout, progress=False)
    assert "000003" not in {r["track_id"] for r in read_manifest(layout.raw_manifest)}
    assert _exclusions(layout)["fma_small/000/000003.mp3"] == "unreadable"


def test_deflate64_zip_says_to_unzip_with_7zip(fma_tree, tmp_path) -> None:
    src = _stored_copy(fma_tree, tmp_path / "src")
    archive = src / "fma_small.zip"
    data = bytearray(archive.read_bytes())
    with zipfile.ZipFile(archive) as zf:
        infos = zf.infolist()
    for info in infos:  # method 9 (Deflate64) in each local header ...
        data[info.header_offset + 8 : info.header_offset + 10] = (9).to_bytes(2, "little")
    start = data.find(b"PK\x01\x02")
    while start != -1:  # ... and in each central directory entry
        data[start + 10 : start + 12] = (9).to_bytes(2, "little")
        start = data.find(b"PK\x01\x02", start + 4)
    archive.write_bytes(bytes(data))
    with pytest.raises(SourceError, match=r"fma_small\.zip: .*Deflate64.*7-Zip"):
        fetch(_params(src).data, Layout(tmp_path / "repo"), progress=False)


# --------------------------------------------------------------------------- tracks.csv rules
def test_tracks_csv_is_read_with_its_real_header(fma_tree) -> None:
    path = fma_tree / "dir" / "fma_metadata" / "tracks.csv"
    tracks = read_tracks(*find_tracks_csv(fma_tree / "dir"))
    assert tracks.index.name == "track_id" and tracks.index.dtype == "int64"
    assert list(tracks.columns) == ["split", "subset", "genre_top"]
    assert tracks.loc[1040, "genre_top"] == "Old-Time / Historic"
    assert tracks.loc[140, "genre_top"] == "" and tracks.loc[150, "split"] == ""
    # the authors' own reading gives the same three columns
    authors = pd.read_csv(path, index_col=0, header=[0, 1])
    for ours, theirs in (("split", "set"), ("subset", "set"), ("genre_top", "track")):
        key = (theirs, ours)
        assert list(authors[key].fillna("")) == list(tracks[ours])


def test_subsets_are_nested_and_full_is_every_track(fma_tree) -> None:
    tracks = read_tracks(*find_tracks_csv(fma_tree / "zip"))
    sizes = {s: int(in_subset(tracks, s, "t").sum()) for s in ("small", "medium", "large", "full")}
    assert sizes == {"small": 15, "medium": 17, "large": 18, "full": 18}
    sel = select(tracks, "medium", ("hip-hop", "old-time-historic", "rock"), "t")
    assert {4000, 4001, 2} <= set(sel.wanted) and sel.other_subsets == {99999: "large"}


def test_labels_ids_and_paths() -> None:
    assert genre_label("Old-Time / Historic") == "old-time-historic"
    assert genre_label("Hip-Hop") == "hip-hop" and genre_label("Soul-RnB") == "soul-rnb"
    assert genre_label("Easy Listening") == "easy-listening"
    assert track_file(2) == "000/000002.mp3" and track_file(155066) == "155/155066.mp3"
    assert parse_track_file("000/000002.mp3") == 2
    assert parse_track_file("001/000002.mp3") is None  # not where its id puts it
    assert parse_track_file("000/notes.mp3") is None


# --------------------------------------------------------------------------- the stage scripts
def _stage(root: Path, name: str) -> subprocess.CompletedProcess:
    env = child_env(PYTHONPATH=str(REPO / "src"))
    return subprocess.run(
        [sys.executable, str(REPO / "stages" / f"{name}.py")],
        cwd=root,
        env={**env, "GENREFLOW_LOG_LEVEL": "WARNING"},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


@pytest.mark.integration
def test_the_fetch_and_validate_stage_scripts(fma_tree, tmp_path) -> None:
    """The real stage scripts on a params.yaml that selects fma, as `dvc repro` runs them."""
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["data"].update(
        source="fma",
        genres=list(fab.GENRES),
        fma={"path": str(fma_tree / "zip"), "subset": "small"},
    )
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    procs = {name: _stage(tmp_path, name) for name in ("fetch", "validate")}
    for proc in procs.values():
        assert proc.returncode == 0, proc.stderr
    log = procs["fetch"].stderr
    assert "fma: 1 absent excluded (fma_small/000/000030.mp3: tracks.csv lists it" in log
    assert "fma: 3 unlisted excluded" in log and "all in " in log
    summary = json.loads((tmp_path / "reports/validation/summary.json").read_text())
    assert summary["scheme"] == "fma" and summary["per_split"] == {"train": 6, "val": 2, "test": 2}

    params["data"]["genres"] = ["hip-hop"]
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    proc = _stage(tmp_path, "fetch")
    assert proc.returncode == 1
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("genreflow fetch: error: ") and "tracks.csv" in last
    assert "old-time-historic" in last


def test_a_second_file_for_one_track_is_unlisted() -> None:
    sel = Selection(wanted={2: ("hip-hop", "train")}, excluded={}, other_subsets={})
    found, out = _audio_exclusions(["000/000002.MP3", "000/000002.mp3"], "fma_small", "small", sel)
    assert found == {2: "000/000002.MP3"}
    assert [(e.source_path, e.kind) for e in out] == [("fma_small/000/000002.mp3", "unlisted")]


def test_a_folder_wins_over_its_zip(fma_tree, tmp_path) -> None:
    """Unzipping as FMA's README says leaves the zip beside the folder: the folder is read."""
    src = tmp_path / "src"
    shutil.copytree(fma_tree / "dir", src)
    (src / "fma_small.zip").write_bytes(b"not a zip: reading it would fail")
    (src / "fma_metadata.zip").write_bytes(b"not a zip either")
    layout = Layout(tmp_path / "repo")
    fetch(_params(src).data, layout, progress=False)
    assert {r["track_id"] for r in read_manifest(layout.raw_manifest)} == set(fab.EXPECTED.fetched)
