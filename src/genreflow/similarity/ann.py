"""Which faiss index a catalogue of song vectors gets, how it is built and how it is searched.

The vectors are L2-normalised, so the inner product is the cosine similarity. Three types:

- ``flat``: ``IndexFlatIP``, exact. A single query scans every vector, so its latency grows
  with the catalogue; below :data:`EXACT_UP_TO` vectors that scan is fast enough and exact
  search is the right answer.
- ``ivf``: ``IndexIVFFlat``, the vectors bucketed by k-means into :func:`ivf_nlist` lists; a
  query scans the :data:`IVF_NPROBE` nearest lists. Song vectors are clustered (genres,
  versions of one song), which is what an inverted file exploits. It trains and adds in
  seconds on one thread, so a library rebuilt on every ``genreflow index`` stays cheap.
- ``hnsw``: ``IndexHNSWFlat``, a proximity graph searched with :data:`HNSW_EF_SEARCH`
  candidates. Fast queries, but a one-thread build of a million vectors takes many minutes.

:func:`choose_index_type` picks by size (the ``auto`` setting of
``evaluate.search.index``). The threshold and the search settings are the ones
``bench/bench_ann.py`` measured on a million vectors shaped like the champion's (a mixture
fitted to its embeddings of augmented clips); the module docstring of that script gives the
command and the numbers.

Every build gives the same bytes for the same vectors (indexes are DVC outputs): adds run on
one OpenMP thread, and IVF's k-means runs on one thread with a fixed seed and training sample.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Literal

import numpy as np

IndexType = Literal["flat", "hnsw", "ivf"]
INDEX_TYPES: tuple[str, ...] = ("flat", "hnsw", "ivf")
AUTO = "auto"

# Measured by bench/bench_ann.py on 128-d song-like vectors, one query thread, 2 busy cores:
# an exact single query over 50,000 vectors took p50 0.79 / p99 1.31 ms; over 100,000, p50 1.8
# / p99 5.2 ms, 1M 23 / 64 ms. 50,000 x 512 bytes (24 MiB) still fits this CPU's 32 MiB L3
# cache; 100,000 does not, and the scan becomes memory-bound. So: exact up to the largest
# measured size whose p99 stays within 2 ms.
EXACT_UP_TO = 50_000
# Above it, IVF: at 1M it built in 7 s on one thread (HNSW: 223 s on two) and searched as
# well (recall@10 0.9998 at p99 1.6 ms, nprobe 32; HNSW efSearch 64: 0.9968 at 0.43 ms).
APPROXIMATE: IndexType = "ivf"
# IVF: lists probed per query. At 1M (nlist 1024) nprobe 8 gave recall@10 0.965, 16 0.997,
# 32 0.9998: 32 keeps a margin for catalogues less clustered than the bench's mixture, at
# about a millisecond per query.
IVF_NPROBE = 32
IVF_SEED = 1234  # faiss's default k-means seed, pinned here so a faiss upgrade cannot move it
IVF_POINTS_PER_LIST = 64  # k-means training sample per list: enough, and seconds on one thread
# HNSW (index: hnsw only): candidates kept while searching, at least 2 k. At 1M, efSearch 32
# gave recall@10 0.985, 64 0.997 (p99 0.43 ms).
HNSW_EF_SEARCH = 64


def load_faiss() -> Any:
    """Import faiss without its loader's INFO lines (which CPU build it tried and skipped):
    the CLI logs at INFO, and those lines would bury a one-line answer or error."""
    import logging

    logging.getLogger("faiss.loader").setLevel(logging.WARNING)
    import faiss

    return faiss


def choose_index_type(count: int) -> str:
    """``flat`` (exact) for a catalogue of up to :data:`EXACT_UP_TO` vectors, else
    :data:`APPROXIMATE`: exact search while it is fast enough, approximate only when needed."""
    if count < 0:
        raise ValueError(f"count must be >= 0, got {count}")
    return "flat" if count <= EXACT_UP_TO else APPROXIMATE


def resolve_index_type(index_type: str, count: int) -> str:
    """The concrete type a build uses: ``auto`` chosen by ``count``, any other checked."""
    if index_type == AUTO:
        return choose_index_type(count)
    if index_type not in INDEX_TYPES:
        raise ValueError(
            f"unknown index type {index_type!r}; choose auto, {', '.join(INDEX_TYPES)}"
        )
    return index_type


def ivf_nlist(count: int) -> int:
    """Inverted lists for ``count`` vectors: the power of two nearest sqrt(count) (faiss's
    rule of thumb: a query then scans about as many centroids as vectors per list), halved
    until k-means has the 39 training points per list faiss asks for."""
    nlist = 1 << max(0, round(np.log2(max(count, 1)) / 2))
    while nlist > 1 and count < 39 * nlist:
        nlist //= 2
    return nlist


@contextmanager
def one_thread(faiss: Any) -> Iterator[None]:
    """faiss on one OpenMP thread inside the block, then the caller's thread count again.

    HNSW inserts in parallel, and which thread links a node first changes the graph; BLAS
    sums in k-means may change with the thread count. One thread gives the same bytes on
    every run (the index is a DVC output).
    """
    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(threads)


def faiss_index(vectors: np.ndarray, index_type: str = "flat", hnsw_m: int = 32) -> Any:
    """A faiss inner-product index holding ``vectors`` (rows L2-normalised: cosine).

    ``index_type`` is ``flat``, ``hnsw``, ``ivf`` or ``auto`` (chosen by the row count). The
    index carries its search setting (``efSearch``, ``nprobe``) in its bytes, and
    :func:`tune_for_search` sets it again at query time.
    """
    faiss = load_faiss()
    x = np.ascontiguousarray(vectors, dtype=np.float32)
    if x.ndim != 2 or x.shape[0] == 0:
        raise ValueError(f"expected a non-empty (count, dim) array, got shape {x.shape}")
    count, dim = x.shape
    kind = resolve_index_type(index_type, count)
    if kind == "flat":
        index = faiss.IndexFlatIP(dim)
    elif kind == "hnsw":
        index = faiss.IndexHNSWFlat(dim, hnsw_m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efSearch = HNSW_EF_SEARCH
    else:
        index = _trained_ivf(faiss, x)
    with one_thread(faiss):
        index.add(x)
    return index


def _trained_ivf(faiss: Any, x: np.ndarray) -> Any:
    """An ``IndexIVFFlat`` whose lists are k-means of ``x``, trained on one thread with a
    fixed seed and sample size (faiss subsamples the training set with that seed)."""
    nlist = ivf_nlist(len(x))
    quantizer = faiss.IndexFlatIP(x.shape[1])
    index = faiss.IndexIVFFlat(quantizer, x.shape[1], nlist, faiss.METRIC_INNER_PRODUCT)
    index.cp.seed = IVF_SEED
    index.cp.max_points_per_centroid = IVF_POINTS_PER_LIST
    index.cp.min_points_per_centroid = 1  # small catalogues: no warning, nlist is bounded
    index.nprobe = min(IVF_NPROBE, nlist)
    with one_thread(faiss):
        index.train(x)
    return index


def tune_for_search(index: Any, k: int) -> None:
    """Set the query-time search effort of an approximate ``index`` for ``k`` neighbours.

    HNSW returns at most ``efSearch`` good candidates, so it gets at least 2 k; IVF probes
    :data:`IVF_NPROBE` lists (all of them when it has fewer). A flat index needs nothing.
    """
    faiss = load_faiss()
    hnsw = getattr(index, "hnsw", None)
    if hnsw is not None:
        hnsw.efSearch = max(HNSW_EF_SEARCH, 2 * int(k))
        return
    ivf = faiss.try_extract_index_ivf(index)
    if ivf is not None:
        ivf.nprobe = min(max(IVF_NPROBE, ivf.nprobe), ivf.nlist)
