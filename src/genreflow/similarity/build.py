"""Build the similar-song index with the champion: embed the corpus, score retrieval, write.

Two callers keep the index on the champion's vectors: ``evaluate`` (after its promotion
decision, :func:`evaluate_retrieval`) and :mod:`genreflow.pipeline.champion` (``genreflow
index``, ``promote`` and ``rollback``, which also record the rebuilt index in ``dvc.lock``).
This module knows nothing of DVC or of how the champion moved. Every vector comes from
``ServedModel.analyse(path).embedding``, the same path a query takes, so an indexed song and a
query of the same file get the same vector.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from genreflow.core.config import Params
from genreflow.core.paths import Layout
from genreflow.core.progress import progress_bar
from genreflow.similarity.ann import resolve_index_type
from genreflow.similarity.catalogue import (
    QUERY_SPLIT,
    absolute_paths,
    manifest_digest,
    read_corpus,
)
from genreflow.similarity.index import (
    IndexMeta,
    SearchIndexError,
    load_faiss,
    read_meta,
    write_index,
)
from genreflow.similarity.metrics import RetrievalScores, retrieval_scores

METRIC_PRECISION = "retrieval_precision_at_{k}"
METRIC_MAP = "retrieval_map"


def embed_files(served: Any, paths: Sequence[Path], progress: bool = True) -> np.ndarray:
    """``(len(paths), dim)`` float32 song vectors from ``served.analyse`` (a progress bar)."""
    vectors = [
        np.asarray(served.analyse(path).embedding, dtype=np.float32)
        for path in progress_bar(
            paths, desc="similarity index: embedding", unit="clip", disable=not progress
        )
    ]
    return np.stack(vectors)


def corpus_retrieval(
    vectors: np.ndarray, catalogue: pd.DataFrame, k: int
) -> RetrievalScores | None:
    """Test clips as queries against the train+val catalogue; ``None`` without either side."""
    is_query = (catalogue["split"] == QUERY_SPLIT).to_numpy()
    if is_query.all() or not is_query.any():
        return None
    genres = catalogue["genre"].to_numpy()
    return retrieval_scores(
        vectors[is_query], list(genres[is_query]), vectors[~is_query], list(genres[~is_query]), k
    )


def retrieval_metrics(scores: RetrievalScores) -> dict[str, float]:
    """The MLflow metric names and values of ``scores``."""
    return {
        METRIC_PRECISION.format(k=scores.k): scores.precision_at_k,
        METRIC_MAP: scores.mean_average_precision,
    }


def _log_retrieval(run_id: str | None, scores: RetrievalScores | None) -> None:
    from mlflow.tracking import MlflowClient

    if run_id is None or scores is None:
        return
    client = MlflowClient()
    for key, value in retrieval_metrics(scores).items():
        client.log_metric(run_id, key, float(value))


def _up_to_date(directory: Path, fresh: IndexMeta, k: int) -> IndexMeta | None:
    """The existing meta if it was built from the same model, corpus and search params
    (an unreadable or older-format meta is not: the index is rebuilt)."""
    try:
        old = read_meta(directory)
    except SearchIndexError:
        return None
    same = (
        "registered_model",
        "version",
        "weights_sha256",
        "manifest_sha256",
        "index_type",
        "hnsw_m",
    )
    if not all(getattr(old, f) == getattr(fresh, f) for f in same) or old.count != fresh.count:
        return None
    return old if (old.retrieval or {}).get("k") == k else None


def build_champion_index(
    params: Params, layout: Layout, progress: bool = True, force: bool = True
) -> IndexMeta:
    """Index the validated corpus with the champion of ``tracking.registered_model``.

    Writes ``layout.similarity_index`` atomically and logs the retrieval scores on the
    champion's MLflow run. With no champion it writes an empty index (meta only) that says
    so. ``force=False`` keeps an index already built from the same model and corpus.
    The tracking URI must already be set (the command or stage that calls this sets it).
    """
    from genreflow.registry.aliases import CHAMPION_ALIAS, get_alias
    from genreflow.serving.served import ServedModel

    faiss = load_faiss()
    ev = params.evaluate
    catalogue = read_corpus(layout)
    digest = manifest_digest(layout.validated_manifest)
    # `auto` resolved by the corpus's size here, so meta.json (and the up-to-date check) hold
    # the type actually built
    index_type = resolve_index_type(ev.search.index, len(catalogue))
    base = IndexMeta(
        registered_model=params.tracking.registered_model,
        model_uri=None,
        version=None,
        weights_sha256=None,
        dim=0,
        count=0,
        index_type=index_type,
        hnsw_m=ev.search.hnsw_m if index_type == "hnsw" else None,
        manifest_sha256=digest,
        faiss_version=faiss.__version__,
    )
    champion = get_alias(params.tracking.registered_model, CHAMPION_ALIAS)
    if champion is None:
        write_index(layout.similarity_index, base, None, None)
        return base
    # pinned to the version: the alias may move
    uri = f"models:/{params.tracking.registered_model}/{champion.version}"
    served = ServedModel.load(uri)
    version = str(served.version) if served.version is not None else str(champion.version)
    meta = replace(base, model_uri=uri, version=version, weights_sha256=served.weights_sha256)
    if not force:
        kept = _up_to_date(
            layout.similarity_index, replace(meta, count=len(catalogue)), ev.search.k
        )
        if kept is not None:
            return kept
    vectors = embed_files(served, absolute_paths(catalogue, layout), progress)
    scores = corpus_retrieval(vectors, catalogue, ev.search.k)
    meta = replace(
        meta,
        dim=int(vectors.shape[1]),
        count=len(vectors),
        retrieval=scores.to_dict() if scores is not None else None,
    )
    write_index(layout.similarity_index, meta, vectors, catalogue)
    _log_retrieval(champion.run_id, scores)
    return meta


def evaluate_retrieval(params: Params, layout: Layout, progress: bool = True) -> dict[str, Any]:
    """evaluate's step: rebuild the index with the champion just decided; the metrics entry.

    Returns what ``reports/metrics.json`` holds under ``retrieval``: the champion version the
    scores belong to, precision@k, mAP and the counts behind them.
    """
    meta = build_champion_index(params, layout, progress=progress, force=True)
    return {"model_version": meta.version, **(meta.retrieval or {})}


def describe_index(meta: IndexMeta, directory: Path) -> str:
    """One line on what ``genreflow index`` built."""
    text = (
        f"{directory}: {meta.count} songs x {meta.dim} dims ({meta.index_type}), model "
        f"{meta.registered_model} version {meta.version}"
    )
    r = meta.retrieval
    if r:
        precision = r[f"precision_at_{r['k']}"]
        text += (
            f"; retrieval of {r['queries']} test clips vs {r['catalogue']} train+val clips: "
            f"precision@{r['k']} {precision:.3f}, mAP {r['map']:.3f}"
        )
    return text
