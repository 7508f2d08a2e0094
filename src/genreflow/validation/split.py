"""Train/val/test assignment per *track*, decided before any segmentation.

Splitting segments instead of tracks puts excerpts of one song on both sides and inflates accuracy
by 5-30 points, so the split is fixed here, once per track, and every later stage inherits it.
For GTZAN we use the fault-filtered, artist-conditional lists torchaudio ships (imported, not
copied); for the Free Music Archive its official ``('set', 'split')``, which fetch carries in the
raw manifest's ``source_split`` column (scheme ``fma``); for anything else the ``stratified``
scheme: a seeded hash of each track id, which keeps genre proportions in expectation and never
moves a track when other tracks come or go.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from torchaudio.datasets.gtzan import filtered_test, filtered_train, filtered_valid

from genreflow.core.config import ConfigError

log = logging.getLogger(__name__)

SPLITS: tuple[str, ...] = ("train", "val", "test")

GTZAN_EXCLUDED_REASON = "not in torchaudio's fault-filtered GTZAN split (repetition or mislabel)"

Scheme = Literal["gtzan", "fma", "stratified"]

FMA_SCHEME_REASON = "auto: data.source is fma, so its official split (tracks.csv ('set', 'split'))"


def resolve_scheme(scheme: str, source: str) -> Scheme:
    """The scheme from params alone, before the track ids are known.

    ``auto`` means FMA's official split for the fma source, the GTZAN lists for other real
    data and a stratified split for synthetic data; :func:`choose_scheme` then falls back to
    stratified when the ids are not GTZAN's.
    """
    if scheme == "auto":
        if source == "fma":
            return "fma"
        return "stratified" if source == "synthetic" else "gtzan"
    if scheme not in ("gtzan", "stratified"):
        raise ConfigError(
            f"validate.split.scheme: {scheme!r} is not one of auto, gtzan, stratified"
        )
    return scheme  # type: ignore[return-value]


@dataclass(frozen=True)
class SchemeChoice:
    """The split scheme in use and why: the reason goes into ``summary.json``."""

    scheme: Scheme
    reason: str


def not_gtzan_reason(track_ids: Sequence[str]) -> str | None:
    """Why ``track_ids`` cannot take GTZAN's split (none of them is in its lists), or None."""
    lookup = gtzan_lookup()
    if not track_ids or any(t in lookup for t in track_ids):
        return None
    return (
        f"none of the {len(track_ids)} track ids (e.g. {track_ids[0]!r}) is in torchaudio's "
        "GTZAN split lists"
    )


def choose_scheme(scheme: str, source: str, track_ids: Sequence[str]) -> SchemeChoice:
    """The scheme for these tracks: ``auto`` falls back to stratified for non-GTZAN ids.

    A user's own collection (``data.source: local`` with any file names) then trains with
    the default params, with a logged notice. An explicit ``gtzan`` is left as asked: the
    stage fails on such ids, naming the problem, rather than silently splitting otherwise.
    """
    resolved = resolve_scheme(scheme, source)
    if scheme != "auto":
        return SchemeChoice(resolved, f"validate.split.scheme is {scheme}")
    if resolved == "stratified":
        return SchemeChoice(resolved, f"auto: data.source is {source}, so the stratified split")
    if resolved == "fma":
        return SchemeChoice(resolved, FMA_SCHEME_REASON)
    why = not_gtzan_reason(list(track_ids))
    if why is None:
        return SchemeChoice("gtzan", "auto: the track ids are GTZAN's, so its filtered split")
    reason = f"auto: {why}, so the stratified split (a seeded hash of each track id)"
    log.warning("validate.split.scheme %s", reason)
    return SchemeChoice("stratified", reason)


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


def source_split(paths: Sequence[str], values: Sequence[object]) -> dict[str, str]:
    """Split of each path from the raw manifest's ``source_split`` column (FMA's official one).

    Raises :class:`ValueError` naming the first path whose value is not train / val / test:
    fetch writes one for every file, so a gap means a manifest from another source.
    """
    out: dict[str, str] = {}
    for path, value in zip(paths, values, strict=True):
        if not isinstance(value, str) or value not in SPLITS:
            raise ValueError(f"{path}: source_split is {value!r}, not one of {list(SPLITS)}")
        out[path] = value
    return out


def check_fractions(val_fraction: float, test_fraction: float) -> None:
    """Raise :class:`ConfigError` unless the fractions leave room for a training split."""
    if val_fraction < 0 or test_fraction < 0 or val_fraction + test_fraction >= 1:
        raise ConfigError(
            "validate.split: val_fraction and test_fraction must be >= 0 and sum to < 1 "
            f"(got {val_fraction} and {test_fraction})"
        )


def track_unit(seed: int, track_id: str) -> float:
    """A number in ``[0, 1)`` fixed by ``(seed, track_id)``: the first 8 bytes of a sha256.

    A hash, not a random generator, so no other track (present, absent or added later) can
    change it; and the same on every platform and Python version.
    """
    digest = hashlib.sha256(f"{seed}:{track_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def split_of_track(track_id: str, val_fraction: float, test_fraction: float, seed: int) -> str:
    """``test`` if the track's unit is below ``test_fraction``, then ``val``, else ``train``.

    Test is carved first, so changing only ``val_fraction`` never moves a track into or out of
    the test set.
    """
    u = track_unit(seed, track_id)
    if u < test_fraction:
        return "test"
    if u < test_fraction + val_fraction:
        return "val"
    return "train"


def stable_split(
    track_ids: Iterable[str], val_fraction: float, test_fraction: float, seed: int
) -> dict[str, str]:
    """Split of each track id (``{track_id: split}``), each a pure function of (seed, track id).

    This is the ``stratified`` scheme. A split that shuffles the current clips moves tracks
    between splits whenever one clip is quarantined or added, so a test clip of today may have
    been a training clip of yesterday's champion. Here a track's split never depends on the other
    tracks, nor on their order. It is keyed by track id, not path, because the same GTZAN track
    has different paths in the Marsyas and Kaggle layouts.

    Genre proportions hold *in expectation*: every track, whatever its genre, lands in test with
    probability ``test_fraction`` and in val with ``val_fraction``. Realised counts are binomial,
    so a small genre can miss a split; the validate stage fails if a whole split is empty.
    """
    check_fractions(val_fraction, test_fraction)
    return {t: split_of_track(t, val_fraction, test_fraction, seed) for t in track_ids}
