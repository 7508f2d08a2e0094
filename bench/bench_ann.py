"""Benchmark: faiss indexes over 1,000,000 song-like vectors, exact against approximate.

Why: ``genreflow similar`` searches L2-normalised song vectors by cosine. Which index a
catalogue gets (``genreflow.similarity.ann.choose_index_type``) and how hard an approximate one
searches (``IVF_NPROBE``, ``HNSW_EF_SEARCH``) come from this script. Random unit vectors tell
nothing about that (no cluster structure: HNSW recall@10 was 0.075 at efSearch 64 on them),
so the million vectors here are shaped like the model's:

1. ``source``: the champion embeds every clip of the validated corpus and ``--augment``
   perturbed copies of each (crop, gain, noise, resampling, stereo: the robustness
   perturbations). Cached in ``--cache``; needs the repository's champion.
2. ``fit``: a Gaussian mixture (full covariances, ``--components``) fitted to those
   embeddings, saved to ``--mixture`` (committed: ``bench/ann_mixture.npz``), so a rerun
   needs neither the champion nor the corpus.
3. ``sample``: ``--n`` base vectors and ``--queries`` held-out queries drawn from the
   mixture with ``--seed``, L2-normalised; exact top-k ground truth. Cached.
4. ``build``: each index, with the product's own builder (``ann.faiss_index``: one thread,
   seeded) for ``ivf``; HNSW is built on every core here (its one-thread build of 1M takes
   too long for a benchmark, which measures search, not bytes). Cached with its build time.
5. ``measure``: recall@k (batched) and single-query p50/p99 latency (one vector per search
   on ``--query-threads`` threads, as ``genreflow similar`` asks), for every efSearch /
   nprobe of the sweep, and the exact index's single-query latency at growing sizes (the
   threshold below which ``auto`` stays exact). Ratios are to flat in the same process.

    nice .venv/bin/python bench/bench_ann.py                 # everything; reuses the cache
    nice .venv/bin/python bench/bench_ann.py --measure-only  # search again, cached (~3.5 min)
    .venv/bin/python bench/bench_ann.py --show bench/results/ann.json
    nice .venv/bin/python bench/bench_ann.py --refit         # embed with the champion, refit

A first run takes about 8 minutes on 2 cores (HNSW's build is half; ``--refit`` adds about
3 minutes of embedding); the cache then holds ~1.9 GB under ``bench/results/ann_cache``. The
run ends with a check of the settings ``genreflow.similarity.ann`` ships: the goal
(recall@10 >= 0.95 at p99 < 10 ms) for its IVF nprobe and HNSW efSearch, and whether its
``EXACT_UP_TO`` equals the threshold measured.

Measured 2026-12-04, faiss 1.15.1, 2-core AMD EPYC shared with other work (load average 3 to
6; p99 there is mostly the scheduler's), 1,000 queries, one query thread. The mixture's sample
is a little harder than the embeddings it was fitted to: PCA dimensions for 90/95/99% of the
variance 16/36/85 against 14/30/73, mean nearest-neighbour cosine 0.915 against 0.960.

    index (1M x 128)          build     p50 / p99 ms    p99 x flat  recall@10  size
    flat (exact)              -         23.1 / 63.6     1           1.0000     488 MB
    IVF-Flat nlist 1024, np 8 7 s (1 th)  0.25 / 0.49   0.008       0.9646     496 MB
    IVF-Flat, nprobe 16       (same)    0.48 / 0.81     0.013       0.9974
    IVF-Flat, nprobe 32 (*)   (same)    0.96 / 1.62     0.026       0.9998
    IVF-Flat, nprobe 64       (same)    1.90 / 3.91     0.062       0.9998
    HNSW M=32, efSearch 32    223 s (2) 0.17 / 0.27     0.004       0.9847     748 MB
    HNSW, efSearch 64 (*)     (same)    0.30 / 0.43     0.007       0.9968
    HNSW, efSearch 128        (same)    0.56 / 1.00     0.016       0.9992

    (*) the settings ann ships; auto picks IVF above EXACT_UP_TO (it builds in seconds on
    one thread, as a DVC output must).

Exact single query by size (fastest of 3 per query, load ~12): 10k 0.08/0.08 ms, 20k
0.15/0.25, 50k 0.79/1.31, 100k 1.83/5.24, 200k 4.60/11.0, 500k 16.4/24.7 (p50/p99). Within 2 ms
p99 up to 50,000 vectors, which (24 MiB) still fit this CPU's 32 MiB L3: ``EXACT_UP_TO``.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))


@dataclass
class Result:
    index: str
    description: str
    build_s: float
    latency_p50_ms: float
    latency_p99_ms: float
    recall_at_k: float
    index_bytes: int
    ratios: dict[str, float] | None = None


# --------------------------------------------------------------------------- source
def augmented_waves(
    wave: np.ndarray, rate: int, copies: int, rng: np.random.Generator
) -> list[tuple[np.ndarray, int]]:
    """The clip and ``copies`` perturbed versions of it: a random start cut (up to a quarter),
    gain -20..+6 dB, noise -60..-30 dB, half of them resampled, some stereo."""
    from genreflow.robustness.perturb import add_noise, apply_gain, resample, to_stereo

    out = [(wave, rate)]
    for _ in range(copies):
        w, r = wave[int(rng.uniform(0, 0.25) * len(wave)) :], rate
        w = add_noise(apply_gain(w, float(rng.uniform(-20, 6))), float(rng.uniform(-60, -30)), rng)
        if rng.random() < 0.5:
            new_rate = int(rng.choice([16000, 44100, 48000]))
            w, r = resample(w, r, new_rate), new_rate
        if rng.random() < 0.3:
            w = to_stereo(w, r)
        out.append((w, r))
    return out


def champion_embeddings(root: Path, copies: int, seed: int) -> dict[str, np.ndarray]:
    """The champion's song vectors of every validated clip and its augmented copies."""
    import pandas as pd
    import soundfile as sf
    import torch

    from genreflow.core.config import load_params
    from genreflow.core.paths import Layout
    from genreflow.serving.served import ServedModel, champion_uri
    from genreflow.tracking.store import set_tracking

    torch.set_num_threads(1)
    layout = Layout.from_root(root)
    set_tracking(layout)
    model = ServedModel.load(champion_uri(load_params(layout.params)))
    manifest = pd.read_csv(layout.validated_manifest)
    rng = np.random.default_rng(seed)
    vectors, clips = [], []
    for i, path in enumerate(manifest["path"]):
        wave, rate = sf.read(root / path, dtype="float32")
        for w, r in augmented_waves(wave, rate, copies, rng):
            vectors.append(model.analyse_waveform(w, r).embedding)
            clips.append(i)
    return {
        "vectors": np.stack(vectors).astype(np.float32),
        "clip": np.asarray(clips),
        "version": np.asarray(str(model.version)),
    }


def fit_mixture(x: np.ndarray, components: int, seed: int) -> dict[str, np.ndarray]:
    """A full-covariance Gaussian mixture of the embeddings: weights, means, Cholesky factors.

    The small covariance floor stands for the embedding's tail dimensions (the last 1% of its
    variance is spread over ~50 of 128 dimensions)."""
    from sklearn.mixture import GaussianMixture

    gmm = GaussianMixture(components, covariance_type="full", reg_covar=1e-4, random_state=seed)
    gmm.fit(x.astype(np.float64))
    return {
        "weights": gmm.weights_.astype(np.float64),
        "means": gmm.means_.astype(np.float32),
        "chol": np.linalg.cholesky(gmm.covariances_).astype(np.float32),
    }


def sample_mixture(
    mixture: dict[str, np.ndarray], n: int, rng: np.random.Generator, chunk: int = 100_000
) -> np.ndarray:
    """``n`` seeded draws from the mixture, L2-normalised, in a seeded random order."""
    means, chol = mixture["means"], mixture["chol"]
    counts = rng.multinomial(n, mixture["weights"] / mixture["weights"].sum())
    out = np.empty((n, means.shape[1]), dtype=np.float32)
    at = 0
    for c, count in enumerate(counts):
        for start in range(0, int(count), chunk):
            m = min(chunk, int(count) - start)
            z = rng.standard_normal((m, means.shape[1]), dtype=np.float32)
            out[at : at + m] = z @ chol[c].T + means[c]
            at += m
    out /= np.linalg.norm(out, axis=1, keepdims=True)
    return out[rng.permutation(n)]


def shape_summary(x: np.ndarray, rng: np.random.Generator, rows: int = 2400) -> dict[str, Any]:
    """What the fit should keep: PCA dimensions for 90/95/99% of the variance, the mean's
    norm, and the mean nearest-neighbour cosine within a sample of ``rows`` vectors."""
    s = x[rng.choice(len(x), min(rows, len(x)), replace=False)].astype(np.float64)
    spectrum = np.linalg.svd(s - s.mean(0), compute_uv=False) ** 2
    share = np.cumsum(spectrum) / spectrum.sum()
    sims = s @ s.T
    np.fill_diagonal(sims, -2)
    return {
        "pca_dims_90_95_99": [int(np.searchsorted(share, t)) + 1 for t in (0.9, 0.95, 0.99)],
        "mean_norm": round(float(np.linalg.norm(s.mean(0))), 4),
        "nn_cosine": round(float(sims.max(1).mean()), 4),
    }


def mixture_source(args: argparse.Namespace) -> dict[str, np.ndarray]:
    """The committed mixture, or embed and fit it (``--refit``, or none saved yet)."""
    path = Path(args.mixture)
    if path.is_file() and not args.refit:
        return dict(np.load(path))
    cached = Path(args.cache) / f"embeddings_aug{args.augment}.npz"
    if cached.is_file():
        emb = dict(np.load(cached))
    else:
        t0 = time.perf_counter()
        emb = champion_embeddings(ROOT, args.augment, args.seed)
        np.savez(cached, **emb)
        print(f"embedded {len(emb['vectors'])} clips: {time.perf_counter() - t0:.0f} s")
    mixture = fit_mixture(emb["vectors"], args.components, args.seed)
    mixture["source_shape"] = np.asarray(json.dumps(shape_summary(emb["vectors"], rng(args))))
    mixture["model_version"] = emb["version"]
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, **mixture)
    return mixture


def rng(args: argparse.Namespace, stream: int = 0) -> np.random.Generator:
    return np.random.default_rng([args.seed, stream])


# --------------------------------------------------------------------------- data
def cached_array(path: Path, make: Callable[[], np.ndarray]) -> np.ndarray:
    if path.is_file():
        return np.load(path)
    x = make()
    np.save(path, x)
    return x


def dataset(args: argparse.Namespace, mixture: dict[str, np.ndarray]) -> tuple[Any, ...]:
    """Base vectors, held-out queries and the exact top-k of each query (all cached)."""
    import faiss

    cache = Path(args.cache)
    tag = f"n{args.n}_c{args.components}_s{args.seed}"
    base = cached_array(
        cache / f"base_{tag}.npy", lambda: sample_mixture(mixture, args.n, rng(args, 1))
    )
    queries = cached_array(
        cache / f"queries_{tag}_q{args.queries}.npy",
        lambda: sample_mixture(mixture, args.queries, rng(args, 2)),
    )

    def exact() -> np.ndarray:
        index = faiss.IndexFlatIP(base.shape[1])
        index.add(base)
        return index.search(queries, args.k)[1]

    truth = cached_array(cache / f"truth_{tag}_q{args.queries}_k{args.k}.npy", exact)
    return base, queries, truth


# --------------------------------------------------------------------------- indexes
def build_hnsw(base: np.ndarray, args: argparse.Namespace) -> Any:
    import faiss

    index = faiss.IndexHNSWFlat(base.shape[1], args.hnsw_m, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = args.ef_construction
    index.add(base)
    return index


def build_ivfpq(base: np.ndarray, args: argparse.Namespace) -> Any:
    import faiss

    from genreflow.similarity.ann import ivf_nlist

    quantizer = faiss.IndexFlatIP(base.shape[1])
    index = faiss.IndexIVFPQ(
        quantizer, base.shape[1], ivf_nlist(len(base)), args.pq_m, 8, faiss.METRIC_INNER_PRODUCT
    )
    index.train(base[: args.train_size])
    index.add(base)
    return index


def build_ivf(base: np.ndarray, args: argparse.Namespace) -> Any:
    from genreflow.similarity.ann import faiss_index

    return faiss_index(base, "ivf")


def cached_index(name: str, base: np.ndarray, args: argparse.Namespace) -> tuple[Any, float]:
    """The built index and its build time, from the cache when a run already built it."""
    import faiss

    path = (
        Path(args.cache)
        / f"{name}_n{args.n}_c{args.components}_s{args.seed}_{build_key(name, args)}.faiss"
    )
    sidecar = path.with_suffix(".json")
    if path.is_file() and sidecar.is_file():
        return faiss.read_index(str(path)), json.loads(sidecar.read_text())["build_s"]
    if args.measure_only:
        raise SystemExit(f"--measure-only: no cached {path}; run once without it")
    build = {"hnsw": build_hnsw, "ivf": build_ivf, "ivfpq": build_ivfpq}[name]
    faiss.omp_set_num_threads(args.build_threads or os.cpu_count() or 1)
    start = time.perf_counter()
    index = build(base, args)
    build_s = time.perf_counter() - start
    faiss.write_index(index, str(path))
    sidecar.write_text(json.dumps({"build_s": build_s}) + "\n")
    print(f"{name}: built in {build_s:.0f} s", flush=True)
    return index, build_s


def build_key(name: str, args: argparse.Namespace) -> str:
    """What a cached index depends on besides the data: its build settings (for ``ivf``,
    those of :mod:`genreflow.similarity.ann`, so a change there rebuilds it)."""
    from genreflow.similarity import ann

    if name == "ivf":
        return f"l{ann.ivf_nlist(args.n)}p{ann.IVF_POINTS_PER_LIST}r{ann.IVF_SEED}"
    if name == "hnsw":
        return f"m{args.hnsw_m}e{args.ef_construction}"
    return f"l{ann.ivf_nlist(args.n)}m{args.pq_m}t{args.train_size}"


def settings(name: str, args: argparse.Namespace) -> list[tuple[str, Callable[[Any], None]]]:
    """Query-time settings to sweep on one built index (label, apply)."""
    import faiss

    def ef(v: int) -> Callable[[Any], None]:
        return lambda index: setattr(index.hnsw, "efSearch", v)

    def nprobe(v: int) -> Callable[[Any], None]:
        return lambda index: setattr(faiss.extract_index_ivf(index), "nprobe", v)

    if name == "hnsw":
        return [(f"ef={v}", ef(v)) for v in parse_ints(args.ef_search)]
    if name in ("ivf", "ivfpq"):
        return [(f"nprobe={v}", nprobe(v)) for v in parse_ints(args.nprobe)]
    return [("", lambda _: None)]


def describe(name: str, index: Any, args: argparse.Namespace) -> str:
    import faiss

    if name == "flat":
        return "IndexFlatIP (exact)"
    if name == "hnsw":
        return f"IndexHNSWFlat M={args.hnsw_m} efConstruction={args.ef_construction}"
    ivf = faiss.extract_index_ivf(index)
    kind = "IndexIVFPQ" if name == "ivfpq" else "IndexIVFFlat (ann.faiss_index)"
    return f"{kind} nlist={ivf.nlist}"


# --------------------------------------------------------------------------- measure
def single_query_latency_ms(
    index: Any, queries: np.ndarray, k: int, repeats: int = 1
) -> tuple[float, float]:
    """p50 and p99 of one-vector searches, in milliseconds (after a few warm-up queries).

    With ``repeats`` > 1 each query's time is the fastest of its repeats: its own cost, with
    the waits of a shared machine's scheduler (a few ms each) taken out.
    """
    for q in queries[:5]:
        index.search(q[None], k)
    times = np.full(len(queries), np.inf)
    for i in range(len(queries)):
        q = queries[i : i + 1]
        for _ in range(repeats):
            start = time.perf_counter()
            index.search(q, k)
            times[i] = min(times[i], time.perf_counter() - start)
    return float(np.percentile(times, 50) * 1e3), float(np.percentile(times, 99) * 1e3)


def recall_at_k(found: np.ndarray, truth: np.ndarray) -> float:
    """Mean share of the exact top-k that the index returned (order ignored)."""
    k = truth.shape[1]
    hits = [len(set(f.tolist()) & set(t.tolist())) for f, t in zip(found, truth, strict=True)]
    return float(np.mean(hits) / k)


def index_bytes(index: Any) -> int:
    import faiss

    return int(faiss.serialize_index(index).nbytes)


def measure(
    name: str, index: Any, build_s: float, data: tuple[Any, ...], args: argparse.Namespace
) -> list[Result]:
    """Recall (batched) and single-query latency of ``index`` under each sweep setting."""
    import faiss

    _, queries, truth = data
    size = index_bytes(index)
    results = []
    for label, apply in settings(name, args):
        apply(index)
        faiss.omp_set_num_threads(os.cpu_count() or 1)
        found = index.search(queries, args.k)[1]
        faiss.omp_set_num_threads(args.query_threads)
        p50, p99 = single_query_latency_ms(index, queries[: args.latency_queries], args.k)
        r = Result(
            index=f"{name} {label}".strip(),
            description=f"{describe(name, index, args)} {label}".strip(),
            build_s=build_s,
            latency_p50_ms=p50,
            latency_p99_ms=p99,
            recall_at_k=recall_at_k(found, truth),
            index_bytes=size,
        )
        results.append(r)
        print(
            f"{r.index}: p50 {p50:.3f} ms, p99 {p99:.3f} ms, recall@{args.k} {r.recall_at_k:.4f}",
            flush=True,
        )
    return results


def flat_scaling(
    base: np.ndarray, queries: np.ndarray, args: argparse.Namespace
) -> list[dict[str, float]]:
    """The exact index's single-query p50/p99 at growing sizes (prefixes of the base set):
    where ``auto`` should stop being exact. Each query is timed as the fastest of
    ``--flat-repeats``, so the threshold follows the scan's cost, not the machine's load."""
    import faiss

    faiss.omp_set_num_threads(args.query_threads)
    rows = []
    for n in parse_ints(args.flat_sizes):
        if n > len(base):
            continue
        index = faiss.IndexFlatIP(base.shape[1])
        index.add(base[:n])
        p50, p99 = single_query_latency_ms(
            index, queries[: args.flat_queries], args.k, args.flat_repeats
        )
        rows.append({"n": n, "latency_p50_ms": p50, "latency_p99_ms": p99})
        print(f"flat n={n}: p50 {p50:.3f} ms, p99 {p99:.3f} ms (best of repeats)", flush=True)
        del index
    return rows


def threshold(scaling: list[dict[str, float]], budget_ms: float) -> int | None:
    """The largest measured size whose exact p99 stays within ``budget_ms``."""
    within = [r["n"] for r in scaling if r["latency_p99_ms"] <= budget_ms]
    return int(max(within)) if within else None


def verdict(report: dict[str, Any]) -> list[str]:
    """The goal (recall@k >= 0.95 at p99 < 10 ms) for the settings ``ann`` ships, and whether
    its exact-search threshold agrees with the one measured here."""
    from genreflow.similarity import ann

    shipped = {
        "ivf": f"ivf nprobe={ann.IVF_NPROBE}",
        "hnsw": f"hnsw ef={ann.HNSW_EF_SEARCH}",
    }
    lines = []
    for kind, label in shipped.items():
        row = next((r for r in report["results"] if r["index"] == label), None)
        if row is None:
            lines.append(f"{label} (ann's setting): not measured in this run")
            continue
        met = row["recall_at_k"] >= 0.95 and row["latency_p99_ms"] < 10.0
        chosen = " (auto's choice)" if kind == ann.APPROXIMATE else ""
        lines.append(
            f"{label}{chosen}: recall@{report['k']} {row['recall_at_k']:.4f}, p99 "
            f"{row['latency_p99_ms']:.2f} ms: goal (>= 0.95 at p99 < 10 ms) "
            + ("met" if met else "NOT met")
        )
    measured = report["exact_up_to"]
    lines.append(
        f"ann.EXACT_UP_TO = {ann.EXACT_UP_TO}: "
        + ("agrees with" if measured == ann.EXACT_UP_TO else "DIFFERS from")
        + f" this run's threshold ({measured})"
    )
    return lines


def with_ratios(results: list[Result], reference: str = "flat") -> list[Result]:
    """Latency and size against the exact index's, measured in the same process."""
    ref = next(r for r in results if r.index == reference)
    for r in results:
        r.ratios = {
            "latency_p50": r.latency_p50_ms / ref.latency_p50_ms,
            "latency_p99": r.latency_p99_ms / ref.latency_p99_ms,
            "index_bytes": r.index_bytes / ref.index_bytes,
        }
    return results


def parse_ints(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v.strip()]


# --------------------------------------------------------------------------- report
def table(results: list[Result], k: int) -> list[str]:
    head = (
        f"{'index':<16} {'build s':>8} {'p50 ms':>8} {'x flat':>7} {'p99 ms':>8} {'x flat':>7} "
        f"{f'recall@{k}':>10} {'index MB':>9}"
    )
    lines = [head]
    for r in results:
        q = r.ratios or {}
        lines.append(
            f"{r.index:<16} {r.build_s:>8.1f} {r.latency_p50_ms:>8.3f} {q['latency_p50']:>7.4f} "
            f"{r.latency_p99_ms:>8.3f} {q['latency_p99']:>7.4f} {r.recall_at_k:>10.4f} "
            f"{r.index_bytes / 2**20:>9.1f}"
        )
    return lines


def print_report(report: dict[str, Any]) -> None:
    fields = set(Result.__dataclass_fields__) - {"ratios"}
    results = [Result(**{k: v for k, v in r.items() if k in fields}) for r in report["results"]]
    print(
        f"\n{report['n']} x {report['dim']} vectors from a {report['components']}-component "
        f"mixture fitted to the champion's embeddings (v{report['model_version']}), faiss "
        f"{report['faiss']}, {report['query_threads']} query thread, load average "
        f"{report['load_before']} -> {report['load_after']}; ratios to flat in this process"
    )
    print(f"shape: embeddings {report['source_shape']}, sample {report['sample_shape']}")
    for line in table(with_ratios(results), report["k"]):
        print(line)
    print(
        "flat single query by size: "
        + ", ".join(
            f"{r['n']}: p50 {r['latency_p50_ms']:.2f} / p99 {r['latency_p99_ms']:.2f} ms"
            for r in report["flat_scaling"]
        )
    )
    print(f"exact within {report['exact_budget_ms']} ms p99 up to n = {report['exact_up_to']}")
    for line in verdict(report):
        print(line)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=1_000_000, help="vectors in the index")
    p.add_argument("--k", type=int, default=10, help="neighbours per query (recall@k)")
    p.add_argument("--queries", type=int, default=1000, help="recall query sample")
    p.add_argument("--latency-queries", type=int, default=1000, help="timed single queries")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--indexes", default="flat,ivf,hnsw", help="comma list, flat first; +ivfpq")
    p.add_argument("--cache", default=str(ROOT / "bench/results/ann_cache"))
    p.add_argument("--mixture", default=str(ROOT / "bench/ann_mixture.npz"))
    p.add_argument("--refit", action="store_true", help="embed (if not cached) and refit")
    p.add_argument("--augment", type=int, default=7, help="augmented copies per clip (fit)")
    p.add_argument("--components", type=int, default=32, help="mixture components (fit)")
    p.add_argument("--measure-only", action="store_true", help="fail rather than build")
    p.add_argument("--build-threads", type=int, default=0, help="HNSW/IVF-PQ build; 0: all")
    p.add_argument("--query-threads", type=int, default=1)
    p.add_argument("--hnsw-m", type=int, default=32)
    p.add_argument("--ef-construction", type=int, default=40)
    p.add_argument("--ef-search", default="16,32,64,128,256")
    p.add_argument("--nprobe", default="4,8,16,32,64,128")
    p.add_argument("--pq-m", type=int, default=32, help="IVF-PQ sub-quantizers")
    p.add_argument("--train-size", type=int, default=100_000, help="IVF-PQ training sample")
    p.add_argument("--flat-sizes", default="10000,20000,50000,100000,200000,500000")
    p.add_argument("--flat-queries", type=int, default=300, help="per size (threshold)")
    p.add_argument("--flat-repeats", type=int, default=3, help="per query, fastest kept")
    p.add_argument("--exact-budget-ms", type=float, default=2.0, help="threshold: exact p99")
    p.add_argument("--out", default=str(ROOT / "bench/results/ann.json"))
    p.add_argument("--show", metavar="JSON", help="print the table of a saved run; no run")
    return p


def main() -> None:
    args = parser().parse_args()
    if args.show:
        print_report(json.loads(Path(args.show).read_text()))
        return
    names = [n.strip() for n in args.indexes.split(",") if n.strip()]
    if names[0] != "flat":
        raise SystemExit("--indexes must start with flat: it is the reference of every ratio")
    args.latency_queries = min(args.latency_queries, args.queries)
    Path(args.cache).mkdir(parents=True, exist_ok=True)
    from genreflow.similarity.ann import load_faiss

    faiss = load_faiss()
    load_before = [round(v, 2) for v in os.getloadavg()]
    mixture = mixture_source(args)
    data = dataset(args, mixture)
    base = data[0]
    results: list[Result] = []
    for name in names:
        if name == "flat":
            index, build_s = faiss.IndexFlatIP(base.shape[1]), 0.0
            index.add(base)
        else:
            index, build_s = cached_index(name, base, args)
        results += measure(name, index, build_s, data, args)
        del index
        gc.collect()
    scaling = flat_scaling(base, data[1], args)
    report = {
        "n": args.n,
        "dim": int(base.shape[1]),
        "k": args.k,
        "queries": args.queries,
        "latency_queries": args.latency_queries,
        "seed": args.seed,
        "components": int(len(mixture["weights"])),
        "model_version": str(mixture["model_version"]),
        "source_shape": json.loads(str(mixture["source_shape"])),
        "sample_shape": shape_summary(base, rng(args, 3)),
        "faiss": faiss.__version__,
        "query_threads": args.query_threads,
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "load_before": load_before,
        "load_after": [round(v, 2) for v in os.getloadavg()],
        "results": [asdict(r) for r in with_ratios(results)],
        "flat_scaling": scaling,
        "exact_budget_ms": args.exact_budget_ms,
        "exact_up_to": threshold(scaling, args.exact_budget_ms),
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print_report(report)
    print(f"written: {out}")


if __name__ == "__main__":
    main()
