"""Where the training loop's batches come from: a split resident on the device, or one
streamed from the memory-mapped feature store when it would not fit a memory budget.

Why two sources behind one interface: a GTZAN-sized split is fastest as one device tensor
(no host work per batch), but an FMA-sized one (fma_medium: ~12 GB of float16) does not fit
in RAM, let alone twice over as float32. Both sources gather the rows the caller names,
in the caller's order, and hand back float32 features with the same values (float16 to
float32 is exact), so the loop's random draws and arithmetic are the same and the weights
are the same bytes whichever source served them: the budget is a runtime knob, not recipe.

The caller passes the row indices to gather (an epoch's permutation, or one rank's shard
of it under DDP), so neither source decides which rows a process reads.

Streaming reads each batch's rows in ascending file order, coalescing adjacent rows into
one ``pread`` each, then restores the caller's order in memory; a background thread keeps
the next batches ready in a bounded queue (the reads and numpy's float conversion release
the GIL). ``pread`` rather than fancy-indexing the memmap: pages touched through a mapping
count in the process's resident set until the kernel evicts them, so an epoch over a
memmap would show the whole store as RSS; pages read by ``pread`` stay in the page cache
only.
"""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from genreflow.features.store import FeatureStore

PREFETCH_DEPTH = 2  # batches read ahead of the one being trained on


def resident_bytes(store: FeatureStore, n_rows: int, device: torch.device) -> int:
    """Bytes ``n_rows`` segments take resident on ``device``: float16 on CUDA, float32 on CPU
    (the CPU's float16 arithmetic is slow, so the resident CPU path widens once)."""
    per_row = int(np.prod(store.features.shape[1:]))
    return n_rows * per_row * (2 if device.type == "cuda" else 4)


@dataclass
class SplitSource:
    """One split's labels and track ids (small, always in memory) and how to gather its
    segments. Subclasses differ only in :meth:`batches`."""

    rows: np.ndarray  # store rows of the split, ascending
    labels: np.ndarray  # (N,) int64, host
    track_ids: np.ndarray  # (N,) str, host
    y: torch.Tensor  # (N,) int64 on the device
    device: torch.device

    streamed = False

    def __len__(self) -> int:
        return len(self.rows)

    def batches(
        self, indices: torch.Tensor, batch_size: int, drop_last: bool = True
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """``(features float32, labels int64)`` on the device for consecutive slices of
        ``indices`` (positions within the split), ``batch_size`` each; ``drop_last`` drops
        a ragged tail. Close the iterator (``contextlib.closing``) if you stop early."""
        raise NotImplementedError


@dataclass
class ResidentSource(SplitSource):
    """The whole split as one device tensor; a batch is a device-side gather."""

    x: torch.Tensor  # (N, n_mels, frames) float16 on CUDA, float32 on CPU

    def batches(
        self, indices: torch.Tensor, batch_size: int, drop_last: bool = True
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for idx in _slices(indices.to(self.device), batch_size, drop_last):
            # index_select copies whole rows: about twice as fast as x[idx] on CPU
            yield torch.index_select(self.x, 0, idx).float(), self.y[idx]


@dataclass
class StreamedSource(SplitSource):
    """The split left in the store: each batch is read from the file when it is needed
    (prefetched), so memory holds a few batches, never the split."""

    features: np.ndarray  # the store's (memory-mapped) segments, all splits

    streamed = True

    def batches(
        self, indices: torch.Tensor, batch_size: int, drop_last: bool = True
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        device_idx = indices.to(self.device)
        host_idx = indices.cpu().numpy()  # one host copy per call, not one per batch
        spans = [(s.start, s.stop) for s in _spans(len(host_idx), batch_size, drop_last)]
        reader = RowReader(self.features)

        cuda = self.device.type == "cuda"

        def read(i: int) -> torch.Tensor:
            start, stop = spans[i]
            block = reader.read(self.rows[host_idx[start:stop]])
            if cuda:  # half the bytes over the bus, pinned for an asynchronous copy
                return torch.from_numpy(block).pin_memory()
            return torch.from_numpy(block.astype(np.float32))

        with reader, Prefetcher(read, len(spans), PREFETCH_DEPTH) as ahead:
            for (start, stop), xb in zip(spans, ahead, strict=True):
                x = xb.to(self.device, non_blocking=True).float()  # exact, as resident
                yield x, self.y[device_idx[start:stop]]


def _spans(n: int, batch_size: int, drop_last: bool) -> list[slice]:
    stop = (n // batch_size) * batch_size if drop_last else n
    return [slice(i, min(i + batch_size, n)) for i in range(0, stop, batch_size)]


def _slices(indices: torch.Tensor, batch_size: int, drop_last: bool) -> Iterator[torch.Tensor]:
    for span in _spans(len(indices), batch_size, drop_last):
        yield indices[span]


class RowReader:
    """Reads arbitrary rows of a store's segments in file order, returning them in the order
    asked (duplicates allowed). A ``.npy`` memmap is read with ``pread`` on its file, one
    call per run of adjacent rows; any other array by fancy indexing."""

    def __init__(self, features: np.ndarray) -> None:
        self.features = features
        self.row_bytes = int(np.prod(features.shape[1:])) * features.dtype.itemsize
        self.path = _npy_file(features)
        self.fd: int | None = None

    def __enter__(self) -> RowReader:
        if self.path is not None:
            self.fd = os.open(self.path[0], os.O_RDONLY)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def read(self, rows: np.ndarray) -> np.ndarray:
        """Segments of ``rows`` (store rows), in that order."""
        unique, inverse = np.unique(rows, return_inverse=True)  # ascending: file order
        block = self._read_sorted(unique)
        if len(unique) == len(rows) and np.array_equal(unique, rows):
            return block
        return block[inverse.reshape(-1)]

    def _read_sorted(self, rows: np.ndarray) -> np.ndarray:
        if self.fd is None or self.path is None:
            return np.asarray(self.features[rows])
        out = np.empty((len(rows), *self.features.shape[1:]), dtype=self.features.dtype)
        buf = memoryview(out.reshape(-1).view(np.uint8))
        breaks = np.flatnonzero(np.diff(rows) != 1) + 1
        starts = np.concatenate(([0], breaks)).astype(np.int64)
        stops = np.concatenate((breaks, [len(rows)])).astype(np.int64)
        rb, base = self.row_bytes, self.path[1]
        for start, stop in zip(starts.tolist(), stops.tolist(), strict=True):
            _pread_into(self.fd, buf[start * rb : stop * rb], base + int(rows[start]) * rb)
        return out


def _pread_into(fd: int, view: memoryview, offset: int) -> None:
    """Fill ``view`` from ``fd`` at ``offset`` (``preadv`` may return short)."""
    done = 0
    while done < len(view):
        got = os.preadv(fd, [view[done:]], offset + done)
        if got <= 0:
            raise OSError(f"short read from the feature store at byte {offset + done}")
        done += got


def _npy_file(features: np.ndarray) -> tuple[str, int] | None:
    """``(path, data offset)`` when ``features`` is a whole ``.npy`` file's memmap (its data
    runs from the offset to the end of the file), else ``None``: a view of a memmap keeps
    its parent's offset, so anything else is read through the array itself."""
    if not isinstance(features, np.memmap) or not hasattr(os, "preadv"):
        return None
    path, offset = getattr(features, "filename", None), getattr(features, "offset", None)
    if path is None or offset is None or not features.flags.c_contiguous:
        return None
    if offset + features.nbytes != os.path.getsize(path):
        return None
    return str(path), int(offset)


class Prefetcher:
    """Runs ``produce(0) .. produce(n - 1)`` on a background thread, at most ``depth`` items
    ahead of the consumer; iterating yields them in order and re-raises the producer's
    error. Leaving the ``with`` block (also early) stops and joins the thread."""

    def __init__(self, produce: Callable[[int], Any], n: int, depth: int) -> None:
        self._produce, self._n = produce, n
        self._queue: queue.Queue[tuple[bool, Any]] = queue.Queue(maxsize=max(depth, 1))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="batch-prefetch", daemon=True)

    def __enter__(self) -> Prefetcher:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        while self._thread.is_alive():
            try:  # unblock a producer waiting on a full queue
                self._queue.get_nowait()
            except queue.Empty:
                self._thread.join(timeout=0.05)

    def __iter__(self) -> Iterator[Any]:
        for _ in range(self._n):
            ok, item = self._queue.get()
            if not ok:
                raise item
            yield item

    def _run(self) -> None:
        for i in range(self._n):
            try:
                item: tuple[bool, Any] = (True, self._produce(i))
            except BaseException as exc:  # handed to the consumer, raised there
                item = (False, exc)
            while not self._stop.is_set():
                try:
                    self._queue.put(item, timeout=0.1)
                    break
                except queue.Full:
                    continue
            if self._stop.is_set() or not item[0]:
                return


def open_splits(
    store: FeatureStore,
    names: tuple[str, ...],
    device: torch.device,
    budget_bytes: float | None,
) -> dict[str, SplitSource]:
    """A source per split: resident while the splits so far fit ``budget_bytes`` (in the
    order named, so the training split has first claim), streamed from the store beyond it.
    ``None``: no budget, every split resident."""
    sources: dict[str, SplitSource] = {}
    left = float("inf") if budget_bytes is None else float(budget_bytes)
    for name in names:
        rows = store.split_rows(name)
        if len(rows) == 0:
            raise ValueError(f"feature store has no '{name}' segments; cannot train without them")
        size = resident_bytes(store, len(rows), device)
        stream = size > left
        if not stream:
            left -= size
        sources[name] = _open(store, rows, device, stream)
    return sources


def _open(store: FeatureStore, rows: np.ndarray, device: torch.device, stream: bool) -> SplitSource:
    labels, track_ids = store.row_targets(rows)
    common: dict[str, Any] = {
        "rows": rows,
        "labels": labels,
        "track_ids": track_ids,
        "y": torch.from_numpy(labels).to(device),
        "device": device,
    }
    if stream:
        return StreamedSource(**common, features=store.features)
    dtype = torch.float16 if device.type == "cuda" else torch.float32
    host = np.ascontiguousarray(store.features[rows])
    return ResidentSource(**common, x=torch.from_numpy(host).to(device=device, dtype=dtype))


class RowView:
    """``features[rows]`` read lazily: ``len`` and slices only, each slice read by a
    :class:`RowReader`. What :func:`genreflow.training.loop.input_stats` walks chunk by
    chunk, so the statistics of a split never need the split in memory."""

    def __init__(self, features: np.ndarray, rows: np.ndarray) -> None:
        self.features, self.rows = features, rows

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, span: slice) -> np.ndarray:
        with RowReader(self.features) as reader:
            return reader.read(self.rows[span])
