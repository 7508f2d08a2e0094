"""Train/val/test assignment per *track*, decided before any segmentation.

Splitting segments instead of tracks puts excerpts of one song on both sides and inflates accuracy
by 5-30 points, so the split is fixed here, once per track, and every later stage inherits it.
For GTZAN we use the fault-filtered, artist-conditional lists torchaudio ships (imported, not
copied); for anything else a seeded split stratified by genre.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Iterable, Sequence
from typing import Literal

import numpy as np
from torchaudio.datasets.gtzan import filtered_test, filtered_train, filtered_valid

from genreflow.config import ConfigError

SPLITS: tuple[str, ...] = ("train", "val", "test")

GTZAN_EXCLUDED_REASON = "not in torchaudio's fault-filtered GTZAN split (repetition or mislabel)"

Scheme = Literal["gtzan", "stratified"]


def resolve_scheme(scheme: str, source: str) -> Scheme:
    """``auto`` means the GTZAN lists for real GTZAN data and a stratified split for synthetic."""
    if scheme == "auto":
        return "stratified" if source == "synthetic" else "gtzan"
    if scheme not in ("gtzan", "stratified"):
        raise ConfigError(
            f"validate.split.scheme: {scheme!r} is not one of auto, gtzan, stratified"
        )
    return scheme  # type: ignore[return-value]


def gtzan_lookup() -> dict[str, str]:
    """Track id (``blues.00029``) -> split, from torchaudio's filtered GTZAN lists."""
    lookup: dict[str, str] = {}
    for split, ids in (("train", filtered_train), ("val", filtered_valid), ("test", filtered_test)):
        lookup.update(dict.fromkeys(ids, split))
    return lookup


def gtzan_split(track_ids: Iterable[str]) -> dict[str, str | None]:
    """Split of each track id; ``None`` for tracks the filtered lists leave out."""
    lookup = gtzan_lookup()
    return {t: lookup.get(t) for t in track_ids}


def check_fractions(val_fraction: float, test_fraction: float) -> None:
    """Raise :class:`ConfigError` unless the fractions leave room for a training split."""
    if val_fraction < 0 or test_fraction < 0 or val_fraction + test_fraction >= 1:
        raise ConfigError(
            "validate.split: val_fraction and test_fraction must be >= 0 and sum to < 1 "
            f"(got {val_fraction} and {test_fraction})"
        )


def split_counts(n: int, val_fraction: float, test_fraction: float) -> tuple[int, int, int]:
    """``(train, val, test)`` sizes for ``n`` clips of one genre.

    Sizes are rounded fractions, but a genre always keeps at least one training clip, and with
    three or more clips every split with a non-zero fraction gets at least one.
    """
    check_fractions(val_fraction, test_fraction)
    if n <= 0:
        return 0, 0, 0
    n_val = math.floor(n * val_fraction + 0.5)
    n_test = math.floor(n * test_fraction + 0.5)
    if n >= 3:
        n_val = max(n_val, 1) if val_fraction > 0 else 0
        n_test = max(n_test, 1) if test_fraction > 0 else 0
    while n_val + n_test > n - 1:  # give clips back to train, val first (test is the yardstick)
        if n_val >= n_test and n_val > 0:
            n_val -= 1
        else:
            n_test -= 1
    return n - n_val - n_test, n_val, n_test


def stratified_split(
    paths: Sequence[str],
    genres: Sequence[str],
    val_fraction: float,
    test_fraction: float,
    seed: int,
) -> dict[str, str]:
    """Seeded split stratified by genre: ``{path: split}``.

    Each genre is shuffled with its own generator, seeded by ``seed`` and the genre's name, so a
    genre's split depends only on its own clips (adding a genre leaves the others alone) and the
    result does not depend on the order of ``paths``.
    """
    if len(paths) != len(genres):
        raise ValueError("paths and genres must have the same length")
    by_genre: dict[str, list[str]] = {}
    for path, genre in zip(paths, genres, strict=True):
        by_genre.setdefault(genre, []).append(path)
    out: dict[str, str] = {}
    for genre in sorted(by_genre):
        members = sorted(by_genre[genre])
        n_train, n_val, n_test = split_counts(len(members), val_fraction, test_fraction)
        rng = np.random.default_rng([seed & 0xFFFFFFFFFFFFFFFF, zlib.crc32(genre.encode("utf-8"))])
        order = [members[i] for i in rng.permutation(len(members))]
        labels = ["test"] * n_test + ["val"] * n_val + ["train"] * n_train
        out.update(zip(order, labels, strict=True))
    return out
