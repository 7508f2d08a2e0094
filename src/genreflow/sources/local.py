"""Find a GTZAN copy on disk (directory or archive) and copy its audio into the raw dir.

People hold GTZAN in one of two layouts:

* Marsyas / ``torchaudio.datasets.GTZAN``: ``genres/<genre>/<genre>.000NN.au`` (or ``.wav``
  after conversion), often with the ``genres/`` folder one level down in an archive;
* Kaggle: ``Data/genres_original/<genre>/<genre>.000NN.wav`` (next to ``images_original/``
  and feature CSVs, which are not audio and are ignored).

Both end up as ``<out>/genres/<genre>/<original file name>``, so the manifest rows (genre,
track_id) agree whichever copy was used. Every audio-looking file is copied, including
ones in genre folders outside ``data.genres`` and files that will not decode: deciding
what is bad is validate's job (it quarantines with a reason), and a file dropped here
would vanish without one. The user's copy is only ever read.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from genreflow.core.errors import GenreflowError
from genreflow.core.progress import progress_bar
from genreflow.sources.archive import archive_kind, safe_extract

log = logging.getLogger(__name__)

AUDIO_SUFFIXES = frozenset({".wav", ".au", ".flac", ".ogg", ".mp3"})
LayoutKind = Literal["marsyas", "kaggle", "genre-folders"]
_NAMED: tuple[tuple[tuple[str, ...], LayoutKind], ...] = (
    (("genres",), "marsyas"),
    (("Data", "genres_original"), "kaggle"),
    (("genres_original",), "kaggle"),
)
_JUNK_DIRS = frozenset({"__MACOSX"})
LAYOUTS_LOOKED_FOR = (
    "genres/<genre>/<genre>.NNNNN.au|.wav (Marsyas, as torchaudio.datasets.GTZAN expects), "
    "Data/genres_original/<genre>/<genre>.NNNNN.wav (Kaggle), each at the top or one folder "
    "down, or a folder that directly holds <genre>/ folders of audio files"
)


class SourceError(GenreflowError, ValueError):
    """The configured local source is missing, empty or not a GTZAN layout."""


@dataclass(frozen=True)
class GtzanTree:
    """Where the ``<genre>/`` folders of a GTZAN copy are, and which layout that was."""

    genres_dir: Path
    kind: LayoutKind


def _visible(p: Path) -> bool:
    return not p.name.startswith(".") and p.name not in _JUNK_DIRS


def is_audio_name(name: str) -> bool:
    """Audio by extension (case-insensitive) and not hidden (``._x.wav`` is macOS junk)."""
    return not name.startswith(".") and Path(name).suffix.lower() in AUDIO_SUFFIXES


def _subdirs(d: Path) -> list[Path]:
    try:
        return sorted(p for p in d.iterdir() if p.is_dir() and _visible(p))
    except (FileNotFoundError, NotADirectoryError):
        return []


def _audio_files(d: Path) -> list[Path]:
    return sorted(p for p in d.iterdir() if p.is_file() and is_audio_name(p.name))


def _is_genres_dir(d: Path) -> bool:
    return d.is_dir() and any(_audio_files(sub) for sub in _subdirs(d))


def _named_at(base: Path) -> list[GtzanTree]:
    return [
        GtzanTree(base.joinpath(*parts), kind)
        for parts, kind in _NAMED
        if _is_genres_dir(base.joinpath(*parts))
    ]


def _pick(found: list[GtzanTree], label: Path | str) -> GtzanTree | None:
    if len(found) > 1:
        where = ", ".join(str(t.genres_dir) for t in found)
        raise SourceError(f"{label}: ambiguous, several GTZAN layouts found ({where}); keep one")
    return found[0] if found else None


def find_gtzan_tree(base: Path, label: Path | str | None = None) -> GtzanTree:
    """Locate the genre folders under ``base``; ``label`` names the source in errors.

    Looks, in order, for a named layout at the top, ``base`` itself being the genre-folder
    dir, then a named layout one folder down (archives usually wrap everything in one
    top-level folder). Raises :class:`SourceError` listing the layouts it looked for.
    """
    base = Path(base)
    label = label if label is not None else base
    tree = _pick(_named_at(base), label)
    if tree is not None:
        return tree
    if _is_genres_dir(base):
        kind: LayoutKind = "genre-folders"
        if base.name == "genres":
            kind = "marsyas"
        elif base.name == "genres_original":
            kind = "kaggle"
        return GtzanTree(base, kind)
    tree = _pick([t for child in _subdirs(base) for t in _named_at(child)], label)
    if tree is not None:
        return tree
    raise SourceError(f"{label}: no GTZAN layout found; looked for {LAYOUTS_LOOKED_FOR}")


def collect_audio(
    tree: GtzanTree, genres: Sequence[str], label: str | None = None
) -> list[tuple[str, Path]]:
    """``(genre, file)`` for every audio-looking file in every genre folder of ``tree``.

    Folders outside ``genres`` are kept (with a warning) so validate can report them.
    ``label`` names the genre-folder dir in log lines (for archives: the archive, not the
    temporary extraction folder).
    """
    where = label or str(tree.genres_dir)
    known = set(genres)
    found: list[tuple[str, Path]] = []
    seen: set[str] = set()
    for genre_dir in _subdirs(tree.genres_dir):
        files = _audio_files(genre_dir)
        if not files:
            continue
        seen.add(genre_dir.name)
        if genre_dir.name not in known:
            log.warning(
                "%s: genre folder %r is not in data.genres; copying its %d files anyway "
                "(validate will quarantine them)",
                where,
                genre_dir.name,
                len(files),
            )
        found.extend((genre_dir.name, f) for f in files)
    missing = [g for g in genres if g not in seen]
    if missing:
        log.warning("%s: no audio for genre(s) %s", where, ", ".join(missing))
    return found


def absolute_param_path(key: str, path: str, root: Path, what: str) -> Path:
    """Param ``key``'s ``path`` made absolute (relative paths are taken from the repo root);
    an empty one is an error asking for ``what``. Whether it exists is the caller's check."""
    if not path or not path.strip():
        raise SourceError(f"{key} is empty: set it to {what}")
    p = Path(path.strip()).expanduser()
    return p if p.is_absolute() else Path(root) / p


def resolve_source_path(path: str, root: Path) -> Path:
    """``data.local.path`` as an absolute path (relative paths are taken from the repo root)."""
    p = absolute_param_path(
        "data.local.path", path, root, f"a GTZAN directory or archive ({LAYOUTS_LOOKED_FOR})"
    )
    if not p.exists():
        raise SourceError(f"{p}: data.local.path does not exist (from {path!r})")
    return p


def _place(items: list[tuple[str, Path]], out_dir: Path, move: bool, progress: bool) -> list[Path]:
    written: list[Path] = []
    for genre, src in progress_bar(items, desc="copy audio", unit="file", disable=not progress):
        target = out_dir / "genres" / genre / src.name
        target.parent.mkdir(parents=True, exist_ok=True)
        if move:  # only for our own temporary extraction, never the user's files
            shutil.move(src, target)
        else:
            shutil.copyfile(src, target)
        written.append(target)
    return written


def stage_local(
    source: Path,
    out_dir: Path,
    genres: Sequence[str],
    *,
    max_extract_bytes: int,
    scratch_dir: Path,
    progress: bool = True,
) -> list[Path]:
    """Copy the GTZAN audio in ``source`` (dir or archive) to ``out_dir/genres/<genre>/``.

    Archives are extracted safely into a temporary folder under ``scratch_dir`` (same disk
    as the output, so files are moved, not copied twice) that is removed afterwards.
    Returns the written files.
    """
    source = Path(source)
    if source.is_dir():
        tree = find_gtzan_tree(source)
        items = collect_audio(tree, genres)
        log.info("%s: %s layout, %d audio files", source, tree.kind, len(items))
        return _place(items, out_dir, move=False, progress=progress)
    if not source.is_file():
        raise SourceError(f"{source}: not found (expected a directory or an archive)")
    archive_kind(source)  # fail fast, naming the file, before creating anything
    scratch_dir = Path(scratch_dir)
    scratch_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".extract-", dir=scratch_dir) as tmp:
        safe_extract(source, Path(tmp), max_extract_bytes, progress=progress)
        tree = find_gtzan_tree(Path(tmp), label=source)
        inner = tree.genres_dir.relative_to(tmp).as_posix()
        items = collect_audio(tree, genres, label=f"{source} [{inner}]")
        log.info("%s: %s layout, %d audio files", source, tree.kind, len(items))
        return _place(items, out_dir, move=True, progress=progress)
