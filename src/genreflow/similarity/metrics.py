"""Retrieval quality of song vectors: same-genre precision@k and mean average precision.

The question these answer is "do a song's nearest neighbours share its genre?", so the test
clips are the queries and the train+val clips the catalogue (a query never finds itself, and
no clip the model was selected on is a query). Relevance is *same genre*. Both numbers are
computed over the exact cosine ranking of the whole catalogue: they measure the vectors, not
the index (an approximate index is a speed trade-off, benchmarked in ``bench/bench_ann.py``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


def precision_at_k(relevant: np.ndarray, k: int) -> float:
    """Share of relevant items among the first ``k`` of one ranking (``relevant`` is 0/1).

    With fewer than ``k`` ranked items the denominator is what there is, so a tiny catalogue
    is not punished for its size.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    top = np.asarray(relevant, dtype=bool)[:k]
    return float(top.mean()) if top.size else 0.0


def average_precision(relevant: np.ndarray) -> float | None:
    """Mean of precision@i over the ranks i that hold a relevant item (a full ranking).

    ``None`` when nothing is relevant: average precision is undefined there, and counting it
    as 0 would blame the vectors for a genre the catalogue lacks.
    """
    rel = np.asarray(relevant, dtype=bool)
    hits = np.flatnonzero(rel)
    if hits.size == 0:
        return None
    precision_at_hits = np.arange(1, hits.size + 1) / (hits + 1)
    return float(precision_at_hits.mean())


def rank_by_cosine(queries: np.ndarray, catalogue: np.ndarray) -> np.ndarray:
    """Catalogue indices per query, most similar first (exact; ties keep catalogue order).

    Both inputs are L2-normalised rows, so the inner product is the cosine similarity.
    """
    scores = np.asarray(queries, dtype=np.float32) @ np.asarray(catalogue, dtype=np.float32).T
    return np.argsort(-scores, axis=1, kind="stable")


@dataclass(frozen=True)
class RetrievalScores:
    """Same-genre retrieval of the test queries against the train+val catalogue."""

    k: int
    precision_at_k: float
    mean_average_precision: float
    queries: int  # queries scored (those whose genre the catalogue holds)
    catalogue: int
    queries_without_relevant: int  # skipped: their genre is absent from the catalogue

    def to_dict(self) -> dict[str, float | int]:
        return {
            f"precision_at_{self.k}": self.precision_at_k,
            "map": self.mean_average_precision,
            "k": self.k,
            "queries": self.queries,
            "catalogue": self.catalogue,
            "queries_without_relevant": self.queries_without_relevant,
        }


def retrieval_scores(
    query_vectors: np.ndarray,
    query_genres: Sequence[str],
    catalogue_vectors: np.ndarray,
    catalogue_genres: Sequence[str],
    k: int,
) -> RetrievalScores:
    """Precision@k and mAP of every query's full ranking, relevance = same genre."""
    if len(query_genres) == 0 or len(catalogue_genres) == 0:
        raise ValueError(
            f"retrieval needs queries and a catalogue; got {len(query_genres)} queries and "
            f"{len(catalogue_genres)} catalogue items"
        )
    order = rank_by_cosine(query_vectors, catalogue_vectors)
    cat = np.asarray(catalogue_genres, dtype=object)
    precisions: list[float] = []
    aps: list[float] = []
    skipped = 0
    for genre, ranking in zip(query_genres, order, strict=True):
        relevant = cat[ranking] == genre
        ap = average_precision(relevant)
        if ap is None:
            skipped += 1
            continue
        aps.append(ap)
        precisions.append(precision_at_k(relevant, k))
    if not aps:
        raise ValueError("no query's genre occurs in the catalogue; retrieval is undefined")
    return RetrievalScores(
        k=k,
        precision_at_k=float(np.mean(precisions)),
        mean_average_precision=float(np.mean(aps)),
        queries=len(aps),
        catalogue=len(catalogue_genres),
        queries_without_relevant=skipped,
    )
