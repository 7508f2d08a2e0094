"""A fabricated Free Music Archive copy with every fault the ``fma`` source must handle.

``tracks.csv`` has FMA's real header (two rows, then ``track_id``), the columns fetch reads
(``('set', 'split')``, ``('set', 'subset')``, ``('track', 'genre_top')``) among a few real
ones with free text (a bio with a comma and a line break). The MP3s are 4-s, 8-kHz tones
written by soundfile (libsndfile's MPEG Layer III encoder), each at its own pitch so no two
decode alike. :data:`EXPECTED` says what fetch and validate must make of each file.
"""

from __future__ import annotations

import csv
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

SUBSET = "small"
GENRES = ("hip-hop", "old-time-historic")  # "Hip-Hop" and "Old-Time / Historic" as labels
SR = 8000

# The real file has 52 columns; these keep its header structure and order (album, artist,
# set, track) with the three fetch reads among them.
COLUMNS = (
    ("album", "title"),
    ("artist", "bio"),
    ("artist", "name"),
    ("set", "split"),
    ("set", "subset"),
    ("track", "duration"),
    ("track", "genre_top"),
    ("track", "genres"),
    ("track", "title"),
)


@dataclass(frozen=True)
class Track:
    track_id: int
    split: str  # FMA's: training / validation / test
    subset: str
    genre_top: str  # "" when FMA gives none
    audio: str  # "tone" | "short" | "corrupt" | "none" (listed, no file)


# id | split | subset | genre_top | audio ("none": listed, no file)
_TABLE = """
    2 | training   | small  | Hip-Hop             | tone
    3 | training   | small  | Hip-Hop             | tone
    5 | validation | small  | Hip-Hop             | tone
   10 | test       | small  | Hip-Hop             | tone
   20 | training   | small  | Hip-Hop             | corrupt
   26 | training   | small  | Hip-Hop             | tone
   30 | training   | small  | Hip-Hop             | none
 1040 | training   | small  | Old-Time / Historic | tone
 1082 | training   | small  | Old-Time / Historic | tone
 1083 | validation | small  | Old-Time / Historic | tone
 1084 | test       | small  | Old-Time / Historic | tone
 1102 | training   | small  | Old-Time / Historic | short
 1193 | training   | small  | Old-Time / Historic | tone
  140 | training   | small  |                     | tone
  150 |            | small  | Hip-Hop             | tone
 4000 | training   | medium | Rock                | tone
 4001 | test       | medium | Rock                | none
99999 | test       | large  |                     | none
"""
# 30: listed, absent; 140: no genre_top; 150: no split; 4000: another subset's file in
# fma_small/; 4001 and 99999: other subsets without files, never reported.
TRACKS = tuple(
    Track(int(tid), split, subset, genre, audio)
    for tid, split, subset, genre, audio in (
        (cell.strip() for cell in line.split("|")) for line in _TABLE.strip().splitlines()
    )
)
#: Audio files in fma_small/ that no track of the subset owns, and junk that is not audio.
UNLISTED = ("155/155066.mp3", "000/notes.mp3")
JUNK = ("README.txt", "checksums", "000/.DS_Store")


@dataclass(frozen=True)
class Expected:
    """What fetch keeps (id -> (label, split)), excludes (source path -> kind) and what
    validate quarantines (id -> reason start)."""

    fetched: dict[str, tuple[str, str]]
    excluded: dict[str, str]
    quarantined: dict[str, str]


EXPECTED = Expected(
    fetched={
        "000002": ("hip-hop", "train"),
        "000003": ("hip-hop", "train"),
        "000005": ("hip-hop", "val"),
        "000010": ("hip-hop", "test"),
        "000020": ("hip-hop", "train"),
        "000026": ("hip-hop", "train"),
        "001040": ("old-time-historic", "train"),
        "001082": ("old-time-historic", "train"),
        "001083": ("old-time-historic", "val"),
        "001084": ("old-time-historic", "test"),
        "001102": ("old-time-historic", "train"),
        "001193": ("old-time-historic", "train"),
    },
    excluded={
        "fma_small/000/000030.mp3": "absent",
        "fma_small/000/000140.mp3": "no_genre",
        "fma_small/000/000150.mp3": "bad_split",
        "fma_small/004/004000.mp3": "unlisted",
        "fma_small/155/155066.mp3": "unlisted",
        "fma_small/000/notes.mp3": "unlisted",
    },
    quarantined={"000020": "not decodable audio", "001102": "too short"},
)


def _tone(path: Path, seconds: float, freq: float) -> None:
    t = np.arange(int(seconds * SR)) / SR
    wave = (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, wave, SR, format="MP3", subtype="MPEG_LAYER_III")


def write_tracks_csv(path: Path, tracks: tuple[Track, ...] = TRACKS) -> Path:
    """``tracks.csv`` as FMA ships it: two header rows, the ``track_id`` row, then data."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(["", *(top for top, _ in COLUMNS)])
        w.writerow(["", *(sub for _, sub in COLUMNS)])
        w.writerow(["track_id", *([""] * len(COLUMNS))])
        for t in tracks:
            values = {
                ("album", "title"): f"Album {t.track_id}",
                ("artist", "bio"): "<p>From Brooklyn, NY,\nsince 2004</p>",
                ("artist", "name"): "AWOL",
                ("set", "split"): t.split,
                ("set", "subset"): t.subset,
                ("track", "duration"): "168",
                ("track", "genre_top"): t.genre_top,
                ("track", "genres"): "[21]",
                ("track", "title"): f"Song, {t.track_id}",
            }
            w.writerow([t.track_id, *(values[c] for c in COLUMNS)])
    return path


def write_tree(root: Path) -> Path:
    """``root/fma_metadata/tracks.csv`` and ``root/fma_small/``, every fault planted."""
    write_tracks_csv(root / "fma_metadata" / "tracks.csv")
    (root / "fma_metadata" / "genres.csv").write_text("genre_id,title\n21,Hip-Hop\n")
    audio = root / f"fma_{SUBSET}"
    good = audio / "good.tmp"
    for k, t in enumerate(TRACKS):
        tid = f"{t.track_id:06d}"
        path = audio / tid[:3] / f"{tid}.mp3"
        if t.audio == "tone":
            _tone(path, 4.0, 200.0 + 37.0 * k)
        elif t.audio == "short":
            _tone(path, 1.0, 200.0 + 37.0 * k)
        elif t.audio == "corrupt":  # a real MP3 header, then zeros where the frames were
            _tone(good, 4.0, 200.0 + 37.0 * k)
            path.write_bytes(good.read_bytes()[:400] + bytes(5000))
            good.unlink()
    for k, rel in enumerate(UNLISTED):
        _tone(audio / rel, 4.0, 2000.0 + 50.0 * k)
    for rel in JUNK:
        (audio / rel).parent.mkdir(parents=True, exist_ok=True)
        (audio / rel).write_text("not audio\n")
    return root


def zip_tree(tree: Path, out: Path) -> Path:
    """``fma_metadata.zip`` and ``fma_small.zip`` of ``tree`` in ``out``, as FMA ships them."""
    out.mkdir(parents=True, exist_ok=True)
    for folder in ("fma_metadata", f"fma_{SUBSET}"):
        with zipfile.ZipFile(out / f"{folder}.zip", "w", zipfile.ZIP_DEFLATED) as zf:
            for f in sorted((tree / folder).rglob("*")):
                zf.write(f, f.relative_to(tree).as_posix())
    return out
