"""The one file hash: equal to hashlib's SHA-256 of the whole bytes, whatever the chunking."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from genreflow.core.hashing import CHUNK_BYTES, file_sha256


@pytest.mark.parametrize(
    "size", [0, 1, CHUNK_BYTES - 1, CHUNK_BYTES, CHUNK_BYTES + 1, 2 * CHUNK_BYTES + 7]
)
def test_matches_hashlib_across_chunk_boundaries(tmp_path: Path, size: int) -> None:
    data = (bytes(range(256)) * (size // 256 + 1))[:size]
    f = tmp_path / "f.bin"
    f.write_bytes(data)
    assert file_sha256(f) == hashlib.sha256(data).hexdigest()
    assert file_sha256(str(f)) == file_sha256(f)  # a str path too, as fetch passes


def test_small_chunks_give_the_same_digest(tmp_path: Path) -> None:
    data = b"genreflow" * 1000
    f = tmp_path / "f.bin"
    f.write_bytes(data)
    assert file_sha256(f, chunk=7) == file_sha256(f) == hashlib.sha256(data).hexdigest()


def test_known_digest_of_empty_file(tmp_path: Path) -> None:
    f = tmp_path / "empty"
    f.write_bytes(b"")
    assert file_sha256(f) == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


def test_missing_file_raises_file_not_found(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        file_sha256(tmp_path / "absent")
