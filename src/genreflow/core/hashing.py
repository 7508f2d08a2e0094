"""The one way genreflow hashes a file: hex SHA-256 of its bytes, read in chunks.

Fetch records each raw file's hash, validate checks it, training tags the validated manifest's
hash on its run, the feature store and the similarity index record the manifest they were built
from, and the training checkpoint keys on its source files' hashes. These must agree byte for
byte, so they share one function; reading in 1 MiB chunks keeps a multi-GB archive out of
memory.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

CHUNK_BYTES = 1 << 20


def file_sha256(path: Path | str, chunk: int = CHUNK_BYTES) -> str:
    """Hex SHA-256 of the bytes of the file at ``path`` (read ``chunk`` bytes at a time)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()
