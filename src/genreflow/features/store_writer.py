"""Writing the feature store's files a block at a time, in bounded memory.

A store the size of fma_medium (~12 GB) cannot be gathered in memory and handed to
``np.save``, so ``spectrogramize`` streams each track's segments and rows to disk as they
arrive. The bytes must stay exactly those of ``np.save`` and ``DataFrame.to_csv`` on the whole
store: DVC's recorded hash of ``data/features`` and the store's ``content_sha256`` (which
training checkpoints key on) would otherwise change for unchanged inputs.

- :class:`NpyAppender`: ``segments.npy`` grown along its first axis. The header is written
  for the shape known so far and rewritten in place at the end: numpy pads the first
  dimension of every header to :data:`numpy.lib.format.GROWTH_AXIS_MAX_DIGITS` digits, so
  the final header has the length of the first one.
- :class:`CsvAppender`: a CSV written in chunks by pandas itself, so every value is formatted
  as one ``to_csv`` of the whole table would.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Any, Self

import numpy as np
import numpy.lib.format as npy
import pandas as pd

from genreflow.core.hashing import CHUNK_BYTES


def npy_header(shape: tuple[int, ...], dtype: np.dtype | type) -> bytes:
    """The header ``np.save`` writes for a C-ordered array of ``shape`` and ``dtype``.

    Like ``np.save``, the oldest format version that can hold the header (1.0, else 2.0).
    """
    fields = {"descr": npy.dtype_to_descr(np.dtype(dtype)), "fortran_order": False}
    buf = io.BytesIO()
    try:
        npy.write_array_header_1_0(buf, {**fields, "shape": tuple(shape)})
    except ValueError:  # header over 64 KiB: only with absurdly many dimensions
        buf = io.BytesIO()
        npy.write_array_header_2_0(buf, {**fields, "shape": tuple(shape)})
    return buf.getvalue()


class _PiecewiseFile:
    """A file written piece by piece: finished by :meth:`close` when the ``with`` block
    succeeds, only closed (half-written, for the caller to discard) when it fails."""

    _file: IO[Any] | None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> None:
        if kind is None:
            self.close()
        else:
            self.abort()

    def close(self) -> object:
        raise NotImplementedError

    def abort(self) -> None:
        """Close the file without finishing it."""
        if self._file is not None:
            self._file.close()
            self._file = None


class NpyAppender(_PiecewiseFile):
    """An ``.npy`` file written block by block along axis 0.

    After :meth:`close`, the file's bytes equal ``np.save(path, np.concatenate(blocks))``, or
    ``np.save(path, np.zeros(empty_shape, dtype))`` when no block came; :attr:`sha256` holds
    the digest of the array's data bytes (the header excluded), computed as they were written.
    """

    def __init__(self, path: Path, dtype: np.dtype | type, empty_shape: tuple[int, ...]) -> None:
        self.path = Path(path)
        self.dtype = np.dtype(dtype)
        self.empty_shape = tuple(empty_shape)
        self.sha256 = hashlib.sha256()
        self.rows = 0
        self._tail: tuple[int, ...] | None = None
        self._header_len = 0
        self._file = open(self.path, "wb")  # noqa: SIM115 - closed by close()

    def append(self, block: np.ndarray) -> None:
        """Write ``block``'s rows after those already written (its other axes must match)."""
        if self._file is None:
            raise ValueError(f"{self.path}: appending to a closed .npy writer")
        block = np.ascontiguousarray(block, dtype=self.dtype)
        if block.ndim == 0:
            raise ValueError(f"{self.path}: a 0-d block has no rows to append")
        if self._tail is None:
            self._tail = block.shape[1:]
            header = npy_header((0, *self._tail), self.dtype)  # replaced by close()
            self._file.write(header)
            self._header_len = len(header)
        elif block.shape[1:] != self._tail:
            raise ValueError(
                f"{self.path}: block of shape {block.shape} does not continue rows of "
                f"shape {self._tail}"
            )
        data = block.reshape(-1).view(np.uint8)  # the C-order bytes np.save writes
        self._file.write(data)
        self.sha256.update(data)
        self.rows += block.shape[0]

    @property
    def shape(self) -> tuple[int, ...]:
        """The array's shape as written so far (``empty_shape`` before any block)."""
        return self.empty_shape if self._tail is None else (self.rows, *self._tail)

    def close(self) -> tuple[int, ...]:
        """Write the header for the final shape; returns that shape."""
        if self._file is None:
            return self.shape
        try:
            if self._tail is None:
                self._file.write(npy_header(self.empty_shape, self.dtype))
            else:
                header = npy_header(self.shape, self.dtype)
                if len(header) != self._header_len:  # numpy's growth padding makes this so
                    raise RuntimeError(
                        f"{self.path}: the .npy header for {self.shape} is {len(header)} "
                        f"bytes, not the {self._header_len} reserved"
                    )
                self._file.seek(0)
                self._file.write(header)
        finally:
            self._file.close()
            self._file = None
        return self.shape


class CsvAppender(_PiecewiseFile):
    """A CSV written ``rows`` at a time, byte for byte ``DataFrame(all rows).to_csv(path,
    index=False)``: rows are buffered as columns and handed to pandas every ``chunk`` rows.

    The buffered columns must keep one dtype across chunks (ints stay ints, floats stay
    floats), as they would in the one table.
    """

    def __init__(self, path: Path, columns: Sequence[str], chunk: int = 8192) -> None:
        self.path = Path(path)
        self.columns = list(columns)
        self.chunk = chunk
        self.rows = 0
        self._buffer: dict[str, list[Any]] = {c: [] for c in self.columns}
        self._header_written = False
        self._file = open(self.path, "w", encoding="utf-8", newline="")  # noqa: SIM115

    def append(self, columns: Mapping[str, Sequence[Any]]) -> None:
        """Add rows given as equal-length columns (every column of the table)."""
        if self._file is None:
            raise ValueError(f"{self.path}: appending to a closed CSV writer")
        if set(columns) != set(self.columns):
            raise ValueError(f"{self.path}: columns {sorted(columns)} != {sorted(self.columns)}")
        lengths = {len(v) for v in columns.values()}
        if len(lengths) > 1:
            raise ValueError(f"{self.path}: columns of unequal lengths {sorted(lengths)}")
        for name in self.columns:
            self._buffer[name].extend(columns[name])
        self.rows += lengths.pop() if lengths else 0
        if len(self._buffer[self.columns[0]]) >= self.chunk:
            self._flush()

    def _flush(self) -> None:
        assert self._file is not None
        frame = pd.DataFrame(self._buffer, columns=self.columns)
        if len(frame) or not self._header_written:
            frame.to_csv(self._file, index=False, header=not self._header_written)
            self._header_written = True
        self._buffer = {c: [] for c in self.columns}

    def close(self) -> None:
        """Write what is buffered (and the header of an empty table)."""
        if self._file is None:
            return
        try:
            self._flush()
        finally:
            self._file.close()
            self._file = None


def update_from_file(digest: Any, path: Path, chunk: int = CHUNK_BYTES) -> None:
    """Feed ``path``'s bytes to ``digest`` (a hashlib object) a chunk at a time."""
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
