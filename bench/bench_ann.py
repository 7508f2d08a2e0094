"""Benchmark: faiss indexes over 1,000,000 random 128-d vectors, exact against approximate.

Why: ``genreflow similar`` searches the champion's song vectors with an exact faiss
``IndexFlatIP`` (cosine over L2-normalised vectors). That is right for the corpora this
pipeline produces (hundreds to thousands of songs); this script shows where it stops being
right, by measuring the exact index and two approximate ones (HNSW and IVF-PQ) on a corpus
far larger than any the pipeline builds:

- build time (train + add);
- query latency of single queries (one vector per ``search`` call, as ``genreflow similar``
  makes them), p50 and p99;
- recall@k against exact search (ground truth: ``IndexFlatIP`` on a query sample);
- memory: the serialised index size, and the process RSS growth while building it.

Times are reported raw and as ratios to the exact index measured in the same process (a
shared 2-core machine makes absolute times noise; the ratios are the result). The vectors are
seeded Gaussian, L2-normalised: no cluster structure, so this is a hard case for the
approximate indexes, and their recall here is a lower bound for real song vectors.

    nice .venv/bin/python bench/bench_ann.py                    # 1,000,000 x 128 (minutes)
    .venv/bin/python bench/bench_ann.py --n 100000 --latency-queries 200   # a quick run
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np


@dataclass
class Result:
    index: str
    description: str
    build_s: float
    latency_p50_ms: float
    latency_p99_ms: float
    recall_at_k: float
    index_bytes: int
    rss_delta_bytes: int
    ratios: dict[str, float] | None = None


def fixed_mmap_threshold() -> None:
    """Make glibc return every large block to the OS when it is freed.

    By default glibc raises its mmap threshold after a large block is freed, and later blocks
    of that size then come from the heap and are reused: the RSS growth of a second index build
    would miss memory a freed first one left behind. Setting the threshold pins it (glibc
    only; elsewhere the RSS figures are rougher).
    """
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    if name:
        m_mmap_threshold = -3
        ctypes.CDLL(name).mallopt(m_mmap_threshold, 1 << 20)


def rss_bytes() -> int:
    import psutil

    return int(psutil.Process().memory_info().rss)


def unit_rows(rng: np.random.Generator, n: int, dim: int, chunk: int = 100_000) -> np.ndarray:
    """``n`` seeded Gaussian vectors, L2-normalised (so inner product = cosine)."""
    out = np.empty((n, dim), dtype=np.float32)
    for start in range(0, n, chunk):
        block = rng.standard_normal((min(chunk, n - start), dim), dtype=np.float32)
        block /= np.linalg.norm(block, axis=1, keepdims=True)
        out[start : start + len(block)] = block
    return out


def serialised_bytes(index: Any) -> int:
    """Size of the index as ``faiss.write_index`` stores it (what the pipeline would ship)."""
    import faiss

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "index.faiss"
        faiss.write_index(index, str(path))
        return path.stat().st_size


def single_query_latency_ms(index: Any, queries: np.ndarray, k: int) -> tuple[float, float]:
    """p50 and p99 of one-vector searches, in milliseconds."""
    times = np.empty(len(queries))
    for i in range(len(queries)):
        q = queries[i : i + 1]
        start = time.perf_counter()
        index.search(q, k)
        times[i] = time.perf_counter() - start
    return float(np.percentile(times, 50) * 1e3), float(np.percentile(times, 99) * 1e3)


def recall_at_k(found: np.ndarray, truth: np.ndarray) -> float:
    """Mean share of the exact top-k that the index returned (order ignored)."""
    k = truth.shape[1]
    hits = [len(set(f.tolist()) & set(t.tolist())) for f, t in zip(found, truth, strict=True)]
    return float(np.mean(hits) / k)


Setting = tuple[str, Callable[[Any], None]]  # (label, apply to a built index)


def parse_ints(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v.strip()]


def builders(
    args: argparse.Namespace, dim: int
) -> dict[str, tuple[str, Callable[[], Any], list[Setting]]]:
    """Name -> (description, factory of an empty index, query-time settings to sweep).

    A query-time setting (HNSW ``efSearch``, IVF ``nprobe``) trades recall for latency on one
    built index, so each is measured without rebuilding.
    """
    import faiss

    def hnsw() -> Any:
        index = faiss.IndexHNSWFlat(dim, args.hnsw_m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = args.ef_construction
        return index

    def ivfpq() -> Any:
        quantizer = faiss.IndexFlatIP(dim)
        return faiss.IndexIVFPQ(
            quantizer, dim, args.nlist, args.pq_m, 8, faiss.METRIC_INNER_PRODUCT
        )

    def ef(value: int) -> Callable[[Any], None]:
        return lambda index: setattr(index.hnsw, "efSearch", value)

    def nprobe(value: int) -> Callable[[Any], None]:
        return lambda index: setattr(index, "nprobe", value)

    return {
        "flat": ("IndexFlatIP (exact)", lambda: faiss.IndexFlatIP(dim), [("", lambda _: None)]),
        "hnsw": (
            f"IndexHNSWFlat M={args.hnsw_m} efConstruction={args.ef_construction}",
            hnsw,
            [(f"ef={v}", ef(v)) for v in parse_ints(args.ef_search)],
        ),
        "ivfpq": (
            f"IndexIVFPQ nlist={args.nlist} m={args.pq_m}x8bit "
            f"(trained on {args.train_size} vectors)",
            ivfpq,
            [(f"nprobe={v}", nprobe(v)) for v in parse_ints(args.nprobe)],
        ),
    }


def measure(
    name: str,
    description: str,
    make: Callable[[], Any],
    settings: list[Setting],
    base: np.ndarray,
    queries: np.ndarray,
    truth: np.ndarray,
    args: argparse.Namespace,
) -> list[Result]:
    """Build one index (timed, RSS growth), then recall and latency under each setting."""
    import faiss

    gc.collect()
    threads = args.build_threads or os.cpu_count() or 1
    faiss.omp_set_num_threads(threads)
    rss_before = rss_bytes()
    start = time.perf_counter()
    index = make()
    if not index.is_trained:
        index.train(base[: args.train_size])
    index.add(base)
    build_s = time.perf_counter() - start
    rss_delta = rss_bytes() - rss_before
    size = serialised_bytes(index)
    results = []
    for label, apply in settings:
        apply(index)
        faiss.omp_set_num_threads(threads)
        _, found = index.search(queries, args.k)  # batched: recall
        faiss.omp_set_num_threads(args.query_threads)
        p50, p99 = single_query_latency_ms(index, queries[: args.latency_queries], args.k)
        results.append(
            Result(
                index=f"{name} {label}".strip(),
                description=f"{description} {label}".strip(),
                build_s=build_s,
                latency_p50_ms=p50,
                latency_p99_ms=p99,
                recall_at_k=recall_at_k(found, truth),
                index_bytes=size,
                rss_delta_bytes=rss_delta,
            )
        )
        r = results[-1]
        print(
            f"{r.index}: build {r.build_s:.2f} s, p50 {r.latency_p50_ms:.3f} ms, "
            f"recall@{args.k} {r.recall_at_k:.4f}",
            flush=True,
        )
    del index
    gc.collect()
    return results


def with_ratios(results: list[Result], reference: str = "flat") -> list[Result]:
    """Each index's figures against the exact index's, measured in the same process.

    Latency and size are divided by the exact index's. Build time is divided by one exact
    single query (its p50): "building costs as much as N exact searches", a reference that
    means something, where the exact index's own build is only a copy of the vectors.
    """
    ref = next(r for r in results if r.index == reference)
    for r in results:
        r.ratios = {
            "build_in_exact_queries": r.build_s / (ref.latency_p50_ms / 1e3),
            "latency_p50": r.latency_p50_ms / ref.latency_p50_ms,
            "latency_p99": r.latency_p99_ms / ref.latency_p99_ms,
            "index_bytes": r.index_bytes / ref.index_bytes,
        }
    return results


def table(results: list[Result], k: int) -> list[str]:
    head = (
        f"{'index':<18} {'build s':>9} {'x exact q':>9} {'p50 ms':>8} {'x exact':>8} "
        f"{'p99 ms':>8} {'x exact':>8} {f'recall@{k}':>10} {'index MB':>9} {'RSS +MB':>8}"
    )
    lines = [head]
    for r in results:
        q = r.ratios or {}
        lines.append(
            f"{r.index:<18} {r.build_s:>9.2f} {q['build_in_exact_queries']:>9.0f} "
            f"{r.latency_p50_ms:>8.3f} "
            f"{q['latency_p50']:>8.3f} {r.latency_p99_ms:>8.3f} {q['latency_p99']:>8.3f} "
            f"{r.recall_at_k:>10.4f} {r.index_bytes / 2**20:>9.1f} "
            f"{r.rss_delta_bytes / 2**20:>8.1f}"
        )
    return lines


def header(report: dict[str, Any]) -> str:
    return (
        f"{report['n']} x {report['dim']} random unit vectors, faiss {report['faiss']}, "
        f"{report['build_threads']} build / {report['query_threads']} query thread(s); ratios "
        "are to the exact IndexFlatIP in this process (build: in exact single queries)"
    )


def show(path: Path) -> None:
    """The table of a run saved by ``--out``, with the ratios recomputed from its raw figures."""
    report = json.loads(path.read_text())
    fields = set(Result.__dataclass_fields__) - {"ratios"}
    results = [Result(**{k: v for k, v in r.items() if k in fields}) for r in report["results"]]
    print(header(report))
    for line in table(with_ratios(results), report["k"]):
        print(line)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000, help="vectors in the index")
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--k", type=int, default=10, help="neighbours per query (recall@k)")
    parser.add_argument("--queries", type=int, default=1000, help="recall query sample")
    parser.add_argument("--latency-queries", type=int, default=1000, help="timed single queries")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--indexes", default="flat,hnsw,ivfpq", help="comma list; flat first")
    parser.add_argument(
        "--build-threads", type=int, default=0, help="faiss threads to build; 0: all cores"
    )
    parser.add_argument(
        "--query-threads",
        type=int,
        default=1,
        help="faiss threads for the timed single queries (1: OpenMP start-up dominates a "
        "one-vector search on a busy machine)",
    )
    parser.add_argument("--hnsw-m", type=int, default=32)
    parser.add_argument("--ef-construction", type=int, default=40)
    parser.add_argument("--ef-search", default="64,256,1024", help="HNSW efSearch values")
    parser.add_argument("--nlist", type=int, default=1024)
    parser.add_argument("--nprobe", default="16,64,256", help="IVF nprobe values")
    parser.add_argument("--pq-m", type=int, default=32, help="PQ sub-quantizers (divides dim)")
    parser.add_argument("--train-size", type=int, default=100_000, help="IVF-PQ training sample")
    parser.add_argument("--out", default="bench/results/ann.json")
    parser.add_argument("--show", metavar="JSON", help="print the table of a saved run; no run")
    args = parser.parse_args()
    if args.show:
        show(Path(args.show))
        return
    args.train_size = min(args.train_size, args.n)
    args.latency_queries = min(args.latency_queries, args.queries)

    import faiss

    fixed_mmap_threshold()
    build_threads = args.build_threads or os.cpu_count() or 1
    names = [n.strip() for n in args.indexes.split(",") if n.strip()]
    if names[0] != "flat":
        parser.error("--indexes must start with flat: it is the reference of every ratio")
    available = builders(args, args.dim)
    unknown = sorted(set(names) - set(available))
    if unknown:
        parser.error(f"unknown index(es) {unknown}; choose from {sorted(available)}")

    rng = np.random.default_rng(args.seed)
    t0 = time.perf_counter()
    base = unit_rows(rng, args.n, args.dim)
    queries = unit_rows(rng, args.queries, args.dim)
    faiss.omp_set_num_threads(build_threads)
    exact = faiss.IndexFlatIP(args.dim)
    exact.add(base)
    _, truth = exact.search(queries, args.k)  # ground truth, batched
    del exact
    print(f"data and ground truth: {time.perf_counter() - t0:.1f} s", flush=True)

    results = []
    for name in names:
        description, make, settings = available[name]
        results += measure(name, description, make, settings, base, queries, truth, args)
    with_ratios(results)
    report = {
        "n": args.n,
        "dim": args.dim,
        "k": args.k,
        "queries": args.queries,
        "latency_queries": args.latency_queries,
        "seed": args.seed,
        "faiss": faiss.__version__,
        "build_threads": build_threads,
        "query_threads": args.query_threads,
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "results": [asdict(r) for r in results],
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print("\n" + header(report))
    for line in table(results, args.k):
        print(line)
    print(f"written: {out}")


if __name__ == "__main__":
    main()
