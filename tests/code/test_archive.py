"""Safe extraction: nothing may land outside the target, and the size cap holds."""

from __future__ import annotations

import io
import stat
import tarfile
import zipfile
from pathlib import Path

import pytest

from genreflow.sources.archive import (
    ArchiveTooLargeError,
    UnsafeArchiveError,
    UnsupportedArchiveError,
    archive_kind,
    safe_extract,
)


def _tar(path: Path, members: list[tuple[tarfile.TarInfo, bytes | None]]) -> Path:
    with tarfile.open(path, "w:gz") as tf:
        for info, data in members:
            if data is not None:
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))
            else:
                tf.addfile(info)
    return path


def _file(name: str, data: bytes = b"x") -> tuple[tarfile.TarInfo, bytes]:
    return tarfile.TarInfo(name), data


def _link(name: str, target: str, kind: bytes) -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = target
    return info, None


def _all_files(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*")}


@pytest.fixture
def sandbox(tmp_path: Path) -> Path:
    """tmp_path/box holds the archive and the target; anything else appearing is an escape."""
    box = tmp_path / "box"
    box.mkdir()
    return box


def test_regular_tar_extracts(sandbox: Path) -> None:
    arc = _tar(
        sandbox / "ok.tar.gz",
        [_file("genres/blues/blues.00000.au", b"abc"), _file("genres/input.mf", b"m")],
    )
    n = safe_extract(arc, sandbox / "out", max_bytes=1000, progress=False)
    assert n == 2
    assert (sandbox / "out/genres/blues/blues.00000.au").read_bytes() == b"abc"


@pytest.mark.parametrize(
    ("member", "reason"),
    [
        (_file("../escape.txt"), "'..'"),
        (_file("genres/../../escape.txt"), "'..'"),
        (_link("genres/evil", "../../escape.txt", tarfile.SYMTYPE), "symlink"),
        (_link("evil_abs", "/etc/passwd", tarfile.SYMTYPE), "symlink"),
        (_link("inside_link", "genres/blues/a.wav", tarfile.SYMTYPE), "symlink"),
        (_link("hard", "../escape.txt", tarfile.LNKTYPE), "hardlink"),
        (_link("fifo", "", tarfile.FIFOTYPE), "not a regular file"),
    ],
    ids=["dotdot", "nested-dotdot", "symlink-out", "symlink-abs", "symlink-in", "hardlink", "fifo"],
)
def test_unsafe_tar_members_are_refused(sandbox: Path, member, reason: str) -> None:
    arc = _tar(sandbox / "bad.tar.gz", [_file("genres/blues/a.wav", b"ok"), member])
    before = _all_files(sandbox.parent)
    with pytest.raises(UnsafeArchiveError, match=reason) as exc:
        safe_extract(arc, sandbox / "out", max_bytes=10_000, progress=False)
    assert str(arc) in str(exc.value)
    escaped = _all_files(sandbox.parent) - before
    assert all(p.startswith("box/out/") or p == "box/out" for p in escaped), escaped
    assert not any(p.is_symlink() for p in (sandbox / "out").rglob("*"))


def test_absolute_tar_member_is_refused(sandbox: Path) -> None:
    victim = sandbox.parent / "absolute_escape.txt"
    arc = _tar(sandbox / "abs.tar.gz", [_file(str(victim), b"pwned")])
    with pytest.raises(UnsafeArchiveError, match="absolute"):
        safe_extract(arc, sandbox / "out", max_bytes=10_000, progress=False)
    assert not victim.exists()
    assert _all_files(sandbox / "out") == set()


def _zip(path: Path, members: list[tuple[str | zipfile.ZipInfo, bytes]]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members:
            zf.writestr(name, data)
    return path


@pytest.mark.parametrize("name", ["../escape.txt", "Data/../../escape.txt", "/abs_escape.txt"])
def test_unsafe_zip_paths_are_refused(sandbox: Path, name: str) -> None:
    arc = _zip(sandbox / "bad.zip", [("Data/genres_original/a.wav", b"ok"), (name, b"pwned")])
    before = _all_files(sandbox.parent)
    with pytest.raises(UnsafeArchiveError, match=r"'\.\.'|absolute"):
        safe_extract(arc, sandbox / "out", max_bytes=10_000, progress=False)
    escaped = _all_files(sandbox.parent) - before
    assert all(p.startswith("box/out") for p in escaped), escaped
    assert not Path("/abs_escape.txt").exists()


def test_zip_symlink_member_is_refused(sandbox: Path) -> None:
    info = zipfile.ZipInfo("genres/link")
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    arc = _zip(sandbox / "link.zip", [(info, b"/etc/passwd")])
    with pytest.raises(UnsafeArchiveError, match="symlink"):
        safe_extract(arc, sandbox / "out", max_bytes=10_000, progress=False)
    assert not (sandbox / "out/genres/link").exists()


@pytest.mark.parametrize("kind", ["tar", "zip"])
def test_size_limit_is_enforced_before_writing(sandbox: Path, kind: str) -> None:
    files = [(f"genres/blues/blues.0000{i}.wav", bytes([i]) * 600) for i in range(3)]
    if kind == "tar":
        arc = _tar(sandbox / "big.tar", [_file(n, d) for n, d in files])
    else:
        arc = _zip(sandbox / "big.zip", files)
    with pytest.raises(ArchiveTooLargeError, match="1000 bytes"):
        safe_extract(arc, sandbox / "out", max_bytes=1000, progress=False)
    written = sum(p.stat().st_size for p in (sandbox / "out").rglob("*") if p.is_file())
    assert written <= 1000
    # the same archive passes with a limit that fits it exactly
    assert safe_extract(arc, sandbox / "out2", max_bytes=1800, progress=False) == 3


def test_archive_kind_by_suffix_and_content(sandbox: Path) -> None:
    tar_no_ext = _tar(sandbox / "download", [_file("a.wav")])
    zip_no_ext = _zip(sandbox / "download2", [("a.wav", b"x")])
    assert archive_kind(tar_no_ext) == "tar"
    assert archive_kind(zip_no_ext) == "zip"
    assert archive_kind(Path("x.TGZ")) == "tar"
    not_archive = sandbox / "notes.rar"
    not_archive.write_bytes(b"Rar!\x1a\x07\x00 not supported")
    with pytest.raises(UnsupportedArchiveError, match="notes.rar"):
        archive_kind(not_archive)


def test_corrupt_archive_names_file(sandbox: Path) -> None:
    bad = sandbox / "broken.tar.gz"
    bad.write_bytes(b"\x1f\x8b\x08\x00garbage")
    with pytest.raises(UnsupportedArchiveError, match="broken.tar.gz"):
        safe_extract(bad, sandbox / "out", max_bytes=1000, progress=False)


def test_dot_prefixed_members_extract(sandbox: Path) -> None:
    """``tar -C src .`` writes a ``./`` entry and ``./genres/...`` names: both are fine."""
    dot = tarfile.TarInfo(".")
    dot.type = tarfile.DIRTYPE
    arc = _tar(sandbox / "dot.tar.gz", [(dot, None), _file("./genres/blues/b.au", b"au")])
    assert safe_extract(arc, sandbox / "out", max_bytes=100, progress=False) == 1
    assert (sandbox / "out/genres/blues/b.au").read_bytes() == b"au"


def test_duplicate_member_is_refused(sandbox: Path) -> None:
    arc = _tar(sandbox / "dup.tar", [_file("genres/a.wav", b"1"), _file("genres/a.wav", b"2")])
    with pytest.raises(UnsafeArchiveError, match="duplicate"):
        safe_extract(arc, sandbox / "out", max_bytes=100, progress=False)
