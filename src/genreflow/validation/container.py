"""Container-level integrity checks that a decoder alone does not make.

libsndfile reads a truncated WAV or AU without complaint: it returns the frames that are there and
drops the rest. A clip cut in half by an interrupted copy would then pass every audio check, so we
compare the audio-data size the header declares with the bytes the file really holds.
"""

from __future__ import annotations

import struct
from pathlib import Path

_UNKNOWN_SIZE = 0xFFFFFFFF  # streaming writers put this in the size field when they do not know it
_AU_MAGIC = b".snd"
_RIFF_MAGIC = (b"RIFF", b"RIFX")


def _truncation_message(declared: int, available: int) -> str:
    return f"truncated: header declares {declared} bytes of audio data, file holds {available}"


def _riff_truncation(path: Path, size: int) -> str | None:
    """Walk the RIFF chunks up to ``data`` and compare its declared size with the bytes left."""
    with path.open("rb") as fh:
        head = fh.read(12)
        if len(head) < 12 or head[8:12] != b"WAVE":
            return None  # not a WAVE file: leave the verdict to the decoder
        endian = "<" if head[:4] == b"RIFF" else ">"
        offset = 12
        while offset + 8 <= size:
            fh.seek(offset)
            chunk_id, chunk_size = struct.unpack(f"{endian}4sI", fh.read(8))
            body = offset + 8
            if chunk_id == b"data":
                if chunk_size == _UNKNOWN_SIZE:
                    return None
                available = size - body
                return (
                    _truncation_message(chunk_size, available) if chunk_size > available else None
                )
            # Chunks are word-aligned: an odd-sized chunk is followed by one pad byte.
            offset = body + chunk_size + (chunk_size & 1)
    return None  # no data chunk: the decoder reports that more precisely than we could


def _au_truncation(path: Path, size: int) -> str | None:
    """Sun/NeXT AU (the Marsyas GTZAN format): big-endian data offset and size at bytes 4..12."""
    with path.open("rb") as fh:
        head = fh.read(12)
    if len(head) < 12:
        return None
    data_offset, data_size = struct.unpack(">II", head[4:12])
    if data_size == _UNKNOWN_SIZE or data_offset > size:
        return None
    available = size - data_offset
    return _truncation_message(data_size, available) if data_size > available else None


def truncation_reason(path: Path | str) -> str | None:
    """A human-readable reason when ``path``'s header promises more audio than the file holds.

    Returns ``None`` for intact files and for formats we do not parse (the decoder judges those).
    """
    path = Path(path)
    try:
        size = path.stat().st_size
        with path.open("rb") as fh:
            magic = fh.read(4)
        if magic in _RIFF_MAGIC:
            return _riff_truncation(path, size)
        if magic == _AU_MAGIC:
            return _au_truncation(path, size)
    except (OSError, struct.error):
        return None  # unreadable files are reported by the decoder with its own reason
    return None
