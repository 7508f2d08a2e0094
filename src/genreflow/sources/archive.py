"""Safe extraction of the tar/zip archives GTZAN is distributed as.

An archive is untrusted input (it may come from a URL), so extraction refuses, rather than
skips, anything a music corpus never needs: absolute paths, ``..`` components, symlinks,
hardlinks, device files and FIFOs. Refusing the whole archive is deliberate: a GTZAN copy
holding such a member is corrupt or hostile, and a silently partial corpus would only
surface later as a confusing class imbalance. The first unsafe member raises
:class:`UnsafeArchiveError`; members before it are already in ``dest`` (which callers make a
temporary directory), and nothing is ever written outside ``dest``.

Total uncompressed size is capped (``max_bytes``): the declared size of each member is
checked *before* it is written, and the bytes actually written are counted too, so a
member whose header under-declares its size cannot slip past the limit.
"""

from __future__ import annotations

import logging
import stat
import tarfile
import zipfile
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import IO, Literal

from tqdm import tqdm

from genreflow.core.errors import GenreflowError
from genreflow.core.progress import progress_bar

log = logging.getLogger(__name__)

ArchiveKind = Literal["tar", "zip"]
_TAR_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz")
_ZIP_SUFFIXES = (".zip",)
SUPPORTED_ARCHIVES = "a directory, .tar, .tar.gz/.tgz (also .tar.bz2, .tar.xz) or .zip"
_CHUNK = 1 << 20


class UnsafeArchiveError(GenreflowError, ValueError):
    """An archive member that could escape the target dir, or is not a plain file/dir."""


class ArchiveTooLargeError(UnsafeArchiveError):
    """Extraction would exceed the configured uncompressed-size limit."""


class UnsupportedArchiveError(GenreflowError, ValueError):
    """A file that is neither a tar nor a zip archive."""


def archive_kind(path: Path) -> ArchiveKind:
    """``"tar"`` or ``"zip"`` for ``path``: by suffix first, then by content.

    The suffix wins because a tar whose last member is a small zip can look like a zip to
    :func:`zipfile.is_zipfile` (it searches the file's tail); sniffing is only the fallback
    for downloads whose URL carries no extension.
    """
    path = Path(path)
    name = path.name.lower()
    if name.endswith(_TAR_SUFFIXES):
        return "tar"
    if name.endswith(_ZIP_SUFFIXES):
        return "zip"
    if path.is_file():
        if tarfile.is_tarfile(path):
            return "tar"
        if zipfile.is_zipfile(path):
            return "zip"
    raise UnsupportedArchiveError(
        f"{path}: unsupported archive type (not a tar or zip archive); "
        f"data.local.path must be {SUPPORTED_ARCHIVES}"
    )


def _safe_relpath(archive: Path, name: str) -> PurePosixPath:
    """The member's path relative to the target, or raise if it could land outside it."""
    if not name or name.startswith(("/", "\\")) or PureWindowsPath(name).drive:
        raise UnsafeArchiveError(f"{archive}: member {name!r} has an absolute path; refusing")
    parts = name.replace("\\", "/").split("/")
    if ".." in parts:
        raise UnsafeArchiveError(f"{archive}: member {name!r} contains '..'; refusing")
    # "./genres/x.au" (tar -C dir .) is fine; "./" itself maps to the target dir.
    return PurePosixPath(*[p for p in parts if p not in ("", ".")])


def _target(archive: Path, dest: Path, name: str) -> Path:
    target = dest.joinpath(*_safe_relpath(archive, name).parts)
    # Belt and braces: even if a parent inside dest were a link, never resolve outside it.
    if not target.resolve().is_relative_to(dest.resolve()):
        raise UnsafeArchiveError(f"{archive}: member {name!r} resolves outside {dest}; refusing")
    return target


class _Budget:
    """Running total of uncompressed bytes against ``max_bytes``."""

    def __init__(self, archive: Path, max_bytes: int) -> None:
        self.archive = archive
        self.max_bytes = max_bytes
        self.used = 0

    def _fail(self, name: str, would_be: int) -> ArchiveTooLargeError:
        return ArchiveTooLargeError(
            f"{self.archive}: extracting {name!r} would bring the uncompressed total to "
            f"{would_be} bytes, over the limit of {self.max_bytes} bytes "
            f"(data.url.max_extract_bytes); refusing"
        )

    def reserve(self, name: str, declared: int) -> None:
        if self.used + declared > self.max_bytes:
            raise self._fail(name, self.used + declared)

    def copy(self, name: str, src: IO[bytes], target: Path, bar: tqdm) -> None:
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            out = open(target, "xb")  # noqa: SIM115 - closed by the with below
        except (FileExistsError, IsADirectoryError) as exc:
            raise UnsafeArchiveError(
                f"{self.archive}: member {name!r} is a duplicate or has no file name; refusing"
            ) from exc
        with out:
            for chunk in iter(lambda: src.read(_CHUNK), b""):
                if self.used + len(chunk) > self.max_bytes:
                    raise self._fail(name, self.used + len(chunk))
                out.write(chunk)
                self.used += len(chunk)
                bar.update(len(chunk))


def _extract_tar(archive: Path, dest: Path, budget: _Budget, bar: tqdm) -> int:
    count = 0
    with tarfile.open(archive, mode="r:*") as tf:
        for member in tf:  # lazy: one forward pass, also for .tar.gz
            target = _target(archive, dest, member.name)
            if member.isdir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            if member.issym() or member.islnk():
                raise UnsafeArchiveError(
                    f"{archive}: member {member.name!r} is a "
                    f"{'symlink' if member.issym() else 'hardlink'} to {member.linkname!r}; "
                    "links are refused"
                )
            if not member.isreg():
                raise UnsafeArchiveError(
                    f"{archive}: member {member.name!r} is not a regular file or directory "
                    "(device, FIFO or other special file); refusing"
                )
            # The stdlib 'data' filter agrees with the checks above; ask it too, as a second
            # opinion that tracks future CPython hardening.
            try:
                tarfile.data_filter(member, str(dest))
            except tarfile.FilterError as exc:
                raise UnsafeArchiveError(f"{archive}: member {member.name!r}: {exc}") from exc
            budget.reserve(member.name, member.size)
            src = tf.extractfile(member)
            if src is None:  # pragma: no cover - isreg() members always have data
                raise UnsafeArchiveError(f"{archive}: member {member.name!r} has no data")
            with src:
                budget.copy(member.name, src, target, bar)
            count += 1
    return count


def _extract_zip(archive: Path, dest: Path, budget: _Budget, bar: tqdm) -> int:
    count = 0
    with zipfile.ZipFile(archive) as zf:
        for info in zf.infolist():
            target = _target(archive, dest, info.filename)
            # Unix type bits, when the zip was made on Unix; 0 (unknown) means a plain file.
            mode = stat.S_IFMT(info.external_attr >> 16)
            if info.is_dir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            if mode == stat.S_IFLNK:
                raise UnsafeArchiveError(
                    f"{archive}: member {info.filename!r} is a symlink; links are refused"
                )
            if mode and mode != stat.S_IFREG:
                raise UnsafeArchiveError(
                    f"{archive}: member {info.filename!r} is not a regular file; refusing"
                )
            budget.reserve(info.filename, info.file_size)
            with zf.open(info) as src:
                budget.copy(info.filename, src, target, bar)
            count += 1
    return count


def safe_extract(archive: Path, dest: Path, max_bytes: int, progress: bool = True) -> int:
    """Extract ``archive`` (tar, tar.gz/bz2/xz or zip) into ``dest``; return the file count.

    Raises :class:`UnsupportedArchiveError` for other files, :class:`UnsafeArchiveError` for
    a member that is absolute, contains ``..``, is a link or a special file, and
    :class:`ArchiveTooLargeError` once the uncompressed total would pass ``max_bytes``.
    ``dest`` should be a fresh temporary directory: on error it holds a partial extraction
    that the caller discards.
    """
    archive, dest = Path(archive), Path(dest)
    if not archive.is_file():
        raise FileNotFoundError(f"{archive}: archive not found")
    kind = archive_kind(archive)
    dest.mkdir(parents=True, exist_ok=True)
    budget = _Budget(archive, max_bytes)
    with progress_bar(
        desc=f"extract {archive.name}", unit="B", unit_scale=True, disable=not progress
    ) as bar:
        try:
            if kind == "tar":
                count = _extract_tar(archive, dest, budget, bar)
            else:
                count = _extract_zip(archive, dest, budget, bar)
        except (tarfile.TarError, zipfile.BadZipFile, EOFError) as exc:
            raise UnsupportedArchiveError(f"{archive}: corrupt {kind} archive ({exc})") from exc
    log.info("extracted %d files (%d bytes) from %s", count, budget.used, archive)
    return count
