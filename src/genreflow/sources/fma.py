"""The ``fma`` source: a subset of the Free Music Archive into ``data/raw``, with its split.

What ``tracks.csv`` lists for ``data.fma.subset`` decides what is fetched (see
:mod:`genreflow.sources.fma_metadata`); the audio folder or zip only supplies the bytes
(:mod:`genreflow.sources.fma_files`). Each kept track is *copied* to
``genres/<label>/<6-digit id>.mp3``. Copied, never hardlinked: DVC may make its cache files
read-only or move them, and a hardlink would share those changes with the user's copy.

Left out, each with its reason in ``data/raw/excluded.csv`` and a summary in the log:

* ``no_genre``: a track of the subset without ``genre_top``; ``bad_split``: one whose
  ``('set', 'split')`` is not training/validation/test;
* ``absent``: a track of the subset whose file is not in the audio folder or zip;
* ``unlisted``: an audio file there that is no track of the subset (never trained on);
* ``unreadable``: a zip member that fails to decompress (bad CRC, truncated).

Tracks of other subsets are simply not fetched, and not reported missing. Whether an MP3
decodes, and is long enough, is validate's to decide (it quarantines with a reason).
"""

from __future__ import annotations

import csv
import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from genreflow.core.progress import progress_bar
from genreflow.sources.fma_files import (
    AudioSource,
    UnreadableMemberError,
    find_tracks_csv,
    open_audio_source,
)
from genreflow.sources.fma_metadata import (
    Selection,
    parse_track_file,
    read_tracks,
    select,
    track_file,
)
from genreflow.sources.local import SourceError, absolute_param_path

log = logging.getLogger(__name__)

#: The exclusions report's name inside ``data/raw`` (next to ``manifest.csv``).
EXCLUSIONS_NAME = "excluded.csv"
EXCLUSION_COLUMNS = ("source_path", "track_id", "kind", "reason")
#: Exclusions of one kind named in the log before "... and N more".
LOG_EXAMPLES = 3


@dataclass(frozen=True)
class Exclusion:
    """A track or file fetch left out; ``source_path`` is relative to ``data.fma.path``."""

    source_path: str
    track_id: str  # the 6-digit id, "" when the file name holds none
    kind: str  # no_genre | bad_split | absent | unlisted | unreadable
    reason: str


@dataclass(frozen=True)
class FmaFetch:
    """What :func:`stage_fma` kept (track id -> split) and left out."""

    splits: dict[str, str]
    exclusions: list[Exclusion]


def resolve_fma_path(path: str, root: Path) -> Path:
    """``data.fma.path`` as an absolute directory (relative paths from the repo root)."""
    p = absolute_param_path("data.fma.path", path, root, "the folder holding fma_metadata/")
    if not p.is_dir():
        raise SourceError(f"{p}: data.fma.path is not a directory (from {path!r})")
    return p


def _audio_exclusions(
    files: Sequence[str], folder: str, subset: str, sel: Selection
) -> tuple[dict[int, str], list[Exclusion]]:
    """The subset's files found (track id -> path in the source) and the unlisted ones."""
    found: dict[int, str] = {}
    out: list[Exclusion] = []
    for rel in files:
        tid = parse_track_file(rel)
        where = f"{folder}/{rel}"
        if tid is None:
            reason = "not at a track's path in FMA's layout (<first 3 digits>/<6-digit id>.mp3)"
            out.append(Exclusion(where, "", "unlisted", reason))
        elif tid in found:  # 000002.mp3 and 000002.MP3: the first by name keeps the track
            reason = f"a second file for track {tid:06d}; {folder}/{found[tid]} is used"
            out.append(Exclusion(where, f"{tid:06d}", "unlisted", reason))
        elif tid in sel.wanted:
            found[tid] = rel
        elif tid in sel.other_subsets:
            other = sel.other_subsets[tid]
            reason = f"tracks.csv puts this track in the {other} subset, not in {subset}"
            out.append(Exclusion(where, f"{tid:06d}", "unlisted", reason))
        elif tid not in sel.excluded:  # those are reported with their track's reason
            out.append(Exclusion(where, f"{tid:06d}", "unlisted", "track id not in tracks.csv"))
    return found, out


def _copy(
    audio: AudioSource,
    found: dict[int, str],
    sel: Selection,
    folder: str,
    out_dir: Path,
    progress: bool,
) -> tuple[dict[str, str], list[Exclusion]]:
    splits: dict[str, str] = {}
    unreadable: list[Exclusion] = []
    for tid in progress_bar(
        sorted(found), desc=f"copy {folder}", unit="file", disable=not progress
    ):
        label, split = sel.wanted[tid]
        target = out_dir / "genres" / label / f"{tid:06d}.mp3"
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            audio.copy(found[tid], target)
        except UnreadableMemberError as exc:
            unreadable.append(
                Exclusion(f"{folder}/{found[tid]}", f"{tid:06d}", "unreadable", str(exc))
            )
            continue
        splits[f"{tid:06d}"] = split
    return splits, unreadable


def stage_fma(
    source: Path, subset: str, genres: Sequence[str], out_dir: Path, progress: bool = True
) -> FmaFetch:
    """Copy fma_``subset``'s labelled tracks from ``source`` to ``out_dir/genres/<label>/``.

    Raises :class:`SourceError` (one line naming the file) for a missing or malformed
    ``tracks.csv``, a missing audio folder/zip, or genres that differ from ``genres``.
    Both inputs are found before ``tracks.csv`` is parsed, so a wrong path fails at once.
    """
    opener, csv_label = find_tracks_csv(source)
    folder = f"fma_{subset}"
    with open_audio_source(source, subset) as audio:
        log.info("fma: reading %s", csv_label)
        sel = select(read_tracks(opener, csv_label), subset, genres, csv_label)
        log.info("fma: %d tracks of %s to fetch from %s", len(sel.wanted), folder, audio.label)
        exclusions = [
            Exclusion(f"{folder}/{track_file(tid)}", f"{tid:06d}", kind, reason)
            for tid, (kind, reason) in sel.excluded.items()
        ]
        found, unlisted = _audio_exclusions(audio.files(), folder, subset, sel)
        absent = f"tracks.csv lists it in {folder}, but {audio.name} has no file for it"
        exclusions += unlisted + [
            Exclusion(f"{folder}/{track_file(tid)}", f"{tid:06d}", "absent", absent)
            for tid in sorted(set(sel.wanted) - set(found))
        ]
        splits, unreadable = _copy(audio, found, sel, folder, out_dir, progress)
    exclusions = sorted(exclusions + unreadable, key=lambda e: (e.source_path, e.kind))
    if not splits:
        raise SourceError(f"{source}: no audio file of {folder} could be fetched")
    return FmaFetch(splits, exclusions)


def write_exclusions(path: Path, exclusions: Sequence[Exclusion]) -> None:
    """``excluded.csv`` (header only when nothing was left out), LF line ends."""
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(EXCLUSION_COLUMNS)
        for e in exclusions:
            writer.writerow((e.source_path, e.track_id, e.kind, e.reason))


def log_exclusions(exclusions: Sequence[Exclusion], report: str) -> None:
    """One warning per kind: its count, a few examples, and where the full list is."""
    counts = Counter(e.kind for e in exclusions)
    for kind in sorted(counts):
        rows = [e for e in exclusions if e.kind == kind]
        shown = "; ".join(f"{e.source_path}: {e.reason}" for e in rows[:LOG_EXAMPLES])
        more = f"; ... and {len(rows) - LOG_EXAMPLES} more" if len(rows) > LOG_EXAMPLES else ""
        log.warning("fma: %d %s excluded (%s%s); all in %s", len(rows), kind, shown, more, report)
