"""Reading an FMA copy as the authors ship it: folders, or the zips they come in.

``data.fma.path`` holds ``fma_metadata/`` and ``fma_<subset>/`` (what ``unzip`` makes), or
``fma_metadata.zip`` and ``fma_<subset>.zip`` (the downloads). A folder wins over its zip:
the FMA README's instructions unzip next to the download and leave both. Zips are read in
place, member by member: nothing is extracted that fetch does not keep, and no member name is
ever used as an output path (fetch names its own files), so a hostile name cannot escape.

The user's copy is only read. Some FMA zips use Deflate64 (mdeff/fma issue #5), which
Python's ``zipfile`` cannot decompress; that is an error saying to unzip with 7-Zip.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from genreflow.sources.fma_metadata import Opener
from genreflow.sources.local import SourceError, is_audio_name

log = logging.getLogger(__name__)

_CHUNK = 1 << 20
_JUNK = "__MACOSX"
TRACKS_MEMBER = "fma_metadata/tracks.csv"


class UnreadableMemberError(SourceError):
    """One member of a zip cannot be read (bad CRC, truncated): that file is reported and
    skipped, the rest of the archive is still usable."""


def _deflate64(archive: Path, exc: NotImplementedError) -> SourceError:
    return SourceError(
        f"{archive}: {exc} (FMA's larger zips use Deflate64, which Python cannot read); "
        "unzip it with 7-Zip into data.fma.path and fetch reads the folder"
    )


def _open_zip(archive: Path) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError) as exc:
        raise SourceError(f"{archive}: not a readable zip archive ({exc})") from exc


@contextlib.contextmanager
def _zip_member(archive: Path, member: str) -> Iterator[IO[bytes]]:
    with _open_zip(archive) as zf:
        try:
            fh = zf.open(member)
        except NotImplementedError as exc:
            raise _deflate64(archive, exc) from exc
        with fh:
            yield fh


def find_tracks_csv(root: Path) -> tuple[Opener, str]:
    """An opener for ``tracks.csv`` and the name to give it in messages."""
    folder = root / "fma_metadata" / "tracks.csv"
    if folder.is_file():
        return (lambda: open(folder, "rb")), str(folder)
    archive = root / "fma_metadata.zip"
    if archive.is_file():
        with _open_zip(archive) as zf:
            if TRACKS_MEMBER not in zf.namelist():
                raise SourceError(f"{archive}: holds no {TRACKS_MEMBER}")
        return (lambda: _zip_member(archive, TRACKS_MEMBER)), f"{archive} [{TRACKS_MEMBER}]"
    raise SourceError(f"{root}: no fma_metadata/tracks.csv nor fma_metadata.zip in data.fma.path")


class AudioFolder:
    """``fma_<subset>/`` on disk."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.label = str(folder)
        self.name = f"{folder.name}/"  # in reports: relative to data.fma.path, like the rows

    def files(self) -> list[str]:
        """Audio-looking files, as POSIX paths relative to the folder (hidden ones skipped)."""
        found: list[str] = []
        for dirpath, dirnames, filenames in os.walk(self.folder):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and d != _JUNK)
            base = Path(dirpath).relative_to(self.folder)
            found.extend((base / f).as_posix() for f in filenames if is_audio_name(f))
        return sorted(found)

    def copy(self, rel: str, target: Path) -> None:
        shutil.copyfile(self.folder / rel, target)


class AudioZip:
    """``fma_<subset>.zip``, read member by member under its ``fma_<subset>/`` folder."""

    def __init__(self, archive: Path, folder: str, zf: zipfile.ZipFile) -> None:
        self.label = str(archive)
        self.name = archive.name
        self.archive = archive
        self._zf = zf
        prefix = f"{folder}/"
        self._members = {
            info.filename[len(prefix) :]: info
            for info in zf.infolist()
            if info.filename.startswith(prefix)
            and not info.is_dir()
            and is_audio_name(Path(info.filename).name)
        }
        if not any(name.startswith(prefix) for name in zf.namelist()):
            raise SourceError(f"{archive}: holds no {folder}/ folder")

    def files(self) -> list[str]:
        return sorted(self._members)

    def copy(self, rel: str, target: Path) -> None:
        info = self._members[rel]
        try:
            with self._zf.open(info) as src, open(target, "xb") as out:
                shutil.copyfileobj(src, out, _CHUNK)
        except NotImplementedError as exc:
            raise _deflate64(self.archive, exc) from exc
        except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
            target.unlink(missing_ok=True)
            raise UnreadableMemberError(f"cannot be read from {self.name} ({exc})") from exc


AudioSource = AudioFolder | AudioZip


@contextlib.contextmanager
def open_audio_source(root: Path, subset: str) -> Iterator[AudioSource]:
    """``fma_<subset>/`` (preferred) or ``fma_<subset>.zip`` under ``root``."""
    folder = f"fma_{subset}"
    if (root / folder).is_dir():
        yield AudioFolder(root / folder)
        return
    archive = root / f"{folder}.zip"
    if not archive.is_file():
        raise SourceError(f"{root}: no {folder}/ nor {folder}.zip in data.fma.path")
    with _open_zip(archive) as zf:
        yield AudioZip(archive, folder, zf)
