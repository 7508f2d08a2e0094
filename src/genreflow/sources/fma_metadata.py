"""The Free Music Archive's ``tracks.csv``: which tracks a subset holds, their labels and split.

Layout checked against the FMA authors' loader (``utils.py`` in github.com/mdeff/fma):
``tracks.csv`` has two header rows (``('set', 'subset')``, ``('track', 'genre_top')``, ...)
plus a ``track_id`` row, and is read with ``header=[0, 1], index_col=0``. Subsets are nested:
``('set', 'subset')`` holds the *smallest* subset a track is in (an ordered small < medium <
large), so fma_medium is every track whose subset is small or medium, and ``full`` (the
untrimmed audio of every track) is every row. The split is ``('set', 'split')``: training,
validation or test.

Only the three columns used are parsed: the real file is ~100k rows of 52 columns with long
free text (artist bios), and the header is read the authors' way to find them. Labels are
FMA's ``genre_top`` names made safe as folder names (:func:`genre_label`): "Old-Time /
Historic" holds a slash, and ``data/raw/genres/<genre>/`` must name one folder per genre.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import IO

import pandas as pd

from genreflow.sources.local import SourceError

#: The nested subsets, smallest first (``('set', 'subset')`` holds the smallest one).
SUBSETS: tuple[str, ...] = ("small", "medium", "large")
#: FMA's split names -> the pipeline's.
SPLIT_NAMES: dict[str, str] = {"training": "train", "validation": "val", "test": "test"}
SUBSET_COLUMN = ("set", "subset")
SPLIT_COLUMN = ("set", "split")
GENRE_COLUMN = ("track", "genre_top")
_COLUMNS = (SPLIT_COLUMN, SUBSET_COLUMN, GENRE_COLUMN)
NO_GENRE_REASON = (
    "no ('track', 'genre_top') in tracks.csv (FMA leaves it empty when the track's genres "
    "have no single top-level genre)"
)

Opener = Callable[[], AbstractContextManager[IO[bytes]]]


def genre_label(name: str) -> str:
    """FMA's genre name as genreflow's label: lower case, ``-`` for every run of other
    characters ("Hip-Hop" -> ``hip-hop``, "Old-Time / Historic" -> ``old-time-historic``).

    One spelling serves as folder name, manifest genre, class name and MLflow metric suffix,
    so it must hold no path separator; lower case matches GTZAN's labels.
    """
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def track_file(track_id: int) -> str:
    """``'000/000002.mp3'``: the 6-digit id, in the folder of its first 3 digits."""
    tid = f"{track_id:06d}"
    return f"{tid[:3]}/{tid}.mp3"


def parse_track_file(rel: str) -> int | None:
    """The track id of a path in FMA's audio layout (``000/000002.mp3``), else None."""
    m = re.fullmatch(r"(\d{3})/(\d{6})\.mp3", rel, flags=re.IGNORECASE)
    if m is None or not m.group(2).startswith(m.group(1)):
        return None
    return int(m.group(2))


def read_tracks(open_csv: Opener, label: str) -> pd.DataFrame:
    """``tracks.csv`` as a frame indexed by integer track id with string columns ``split``,
    ``subset`` and ``genre_top`` (``""`` where empty). ``label`` names the file in errors.

    ``open_csv`` is called twice (header, then the three columns), so a zip member works.
    """
    try:
        with open_csv() as fh:
            head = pd.read_csv(fh, header=[0, 1], index_col=0, nrows=0)
    except (ValueError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise SourceError(f"{label}: not a readable tracks.csv ({exc})") from exc
    columns = list(head.columns)
    missing = [c for c in _COLUMNS if c not in columns]
    if missing or head.index.name != "track_id":
        raise SourceError(
            f"{label}: not FMA's tracks.csv (two header rows, then a track_id row); "
            f"missing {', '.join(map(str, missing)) or 'the track_id row'}"
        )
    positions = [columns.index(c) + 1 for c in _COLUMNS]  # +1: the index column comes first
    try:
        with open_csv() as fh:
            body = pd.read_csv(
                fh,
                header=None,
                skiprows=3,
                usecols=[0, *positions],
                index_col=0,
                dtype=str,
                keep_default_na=False,
            )
    except (ValueError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise SourceError(f"{label}: not a readable tracks.csv ({exc})") from exc
    body.columns = ["split", "subset", "genre_top"]
    ids = pd.to_numeric(body.index.str.strip(), errors="coerce")
    bad = body.index[pd.isna(ids) | (ids < 0)]
    if len(bad):
        raise SourceError(f"{label}: track_id {bad[0]!r} is not a non-negative integer")
    body.index = pd.Index(ids.astype("int64"), name="track_id")
    dupes = body.index[body.index.duplicated()]
    if len(dupes):
        raise SourceError(f"{label}: track_id {int(dupes[0])} is listed more than once")
    return body.apply(lambda col: col.str.strip())


def in_subset(tracks: pd.DataFrame, subset: str, label: str) -> pd.Series:
    """Which rows belong to ``subset`` (nested: small is in medium, medium in large)."""
    if subset == "full":
        return pd.Series(True, index=tracks.index)
    unknown = sorted(set(tracks["subset"]) - set(SUBSETS))
    if unknown:
        raise SourceError(
            f"{label}: ('set', 'subset') holds {unknown[:5]}, expected one of {list(SUBSETS)}"
        )
    allowed = SUBSETS[: SUBSETS.index(subset) + 1]
    return tracks["subset"].isin(allowed)


@dataclass(frozen=True)
class Selection:
    """The subset's trainable tracks and the ones excluded from tracks.csv alone."""

    wanted: dict[int, tuple[str, str]]  # track id -> (genre label, split)
    excluded: dict[int, tuple[str, str]]  # track id -> (kind, reason): no_genre | bad_split
    other_subsets: dict[int, str]  # track id -> its subset, for files of another subset


def _check_genres(names: set[str], genres: Sequence[str], subset: str, label: str) -> None:
    """The subset's labels must be exactly ``data.genres``; else one line saying what to set."""
    by_label: dict[str, list[str]] = {}
    for name in sorted(names):
        by_label.setdefault(genre_label(name), []).append(name)
    for lab, group in by_label.items():
        if not lab or len(group) > 1:
            raise SourceError(
                f"{label}: genre_top {group} gives the label {lab!r}; labels must be "
                "distinct and non-empty"
            )
    found = sorted(by_label)
    unknown = [g for g in found if g not in genres]
    unused = [g for g in genres if g not in by_label]
    if not unknown and not unused:
        return
    detail = []
    if unknown:
        listed = ", ".join(f"{by_label[g][0]!r} ({g})" for g in unknown)
        detail.append(f"genre_top {listed} not in data.genres")
    if unused:
        detail.append(f"data.genres {unused} not the genre_top of any track")
    raise SourceError(
        f"{label}: fma_{subset}: {'; '.join(detail)}. Set data.genres: [{', '.join(found)}] "
        "(FMA's genre_top names in lower case, '-' for spaces and '/')"
    )


def select(tracks: pd.DataFrame, subset: str, genres: Sequence[str], label: str) -> Selection:
    """The subset's tracks with a genre_top and a known split, and the others with reasons.

    Raises :class:`SourceError` when the subset's labels and ``data.genres`` differ: a
    misspelt genre would otherwise silently drop thousands of tracks (an FMA genre is ~1/8
    of fma_small, under ``validate.max_quarantine_share``).
    """
    member = in_subset(tracks, subset, label)
    chosen, others = tracks[member], tracks[~member]
    excluded: dict[int, tuple[str, str]] = {}
    for tid, split in chosen["split"].items():
        if split not in SPLIT_NAMES:
            why = f"tracks.csv ('set', 'split') is {split!r}, not one of {list(SPLIT_NAMES)}"
            excluded[int(tid)] = ("bad_split", why)
    for tid, genre in chosen["genre_top"].items():
        if not genre:
            excluded[int(tid)] = ("no_genre", NO_GENRE_REASON)
    usable = chosen[~chosen.index.isin(list(excluded))]
    _check_genres(set(usable["genre_top"]), genres, subset, label)
    wanted = {
        int(tid): (genre_label(g), SPLIT_NAMES[s])
        for tid, g, s in zip(usable.index, usable["genre_top"], usable["split"], strict=True)
    }
    return Selection(wanted, excluded, {int(t): s for t, s in others["subset"].items()})
