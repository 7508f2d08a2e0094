"""The validate stage: decode every raw file, check it with Great Expectations, assign the split.

Files that fail a check are *quarantined*: listed with their reasons in
``reports/validation/quarantine.csv`` and left out of ``data/validated/manifest.csv``. Nothing under
``data/raw`` is modified. Tracks the GTZAN lists leave out are *excluded* (a property of the
dataset, not a data fault), so they do not count towards ``validate.max_quarantine_share``.
FMA's tracks take the official split fetch recorded in the raw manifest (``source_split``).

Full-length tracks pass (``validate.max_duration_s`` only bounds runaway files); every file is
decoded block by block, so a long one costs time, not memory. Track ids (file names without
the extension) must be unique: every later stage groups segments by them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import pandas as pd

from genreflow.core.config import Params
from genreflow.core.hashing import file_sha256
from genreflow.core.paths import Layout
from genreflow.sources.manifest import SOURCE_SPLIT
from genreflow.validation import report
from genreflow.validation.decode_table import MANIFEST_COLUMNS, decode_table
from genreflow.validation.errors import ValidationFailed
from genreflow.validation.split import (
    GTZAN_EXCLUDED_REASON,
    SPLITS,
    SchemeChoice,
    check_fractions,
    choose_scheme,
    gtzan_split,
    source_split,
    stable_split,
)

__all__ = ["ValidationFailed", "ValidationSummary", "validate"]

#: How many quarantined files a failure message lists before pointing at quarantine.csv.
MESSAGE_FILES = 8


@dataclass(frozen=True)
class ValidationSummary:
    """What the stage decided, as written to ``reports/validation/summary.json`` (DVC metrics)."""

    n_files: int
    n_accepted: int
    n_quarantined: int
    n_excluded: int
    quarantine_share: float
    max_quarantine_share: float
    scheme: str
    scheme_reason: str  # how validate.split.scheme was resolved (auto's fallback included)
    gx_success: bool
    class_balance_ok: bool
    passed: bool
    per_split: dict[str, int] = field(default_factory=dict)
    per_genre: dict[str, dict[str, int]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _read_raw_manifest(layout: Layout) -> pd.DataFrame:
    path = layout.raw_manifest
    if not path.is_file():
        raise ValidationFailed(f"{path}: raw manifest not found (run the fetch stage first)")
    try:
        manifest = pd.read_csv(path, dtype={"path": str, "genre": str, "track_id": str})
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise ValidationFailed(f"{path}: not a readable CSV ({exc})") from exc
    missing = [c for c in MANIFEST_COLUMNS if c not in manifest.columns]
    if missing:
        raise ValidationFailed(f"{path}: missing column(s) {missing}; has {list(manifest.columns)}")
    if manifest.empty:
        raise ValidationFailed(f"{path}: lists no files")
    dupes = sorted(manifest.loc[manifest["path"].duplicated(), "path"].unique())
    if dupes:
        raise ValidationFailed(f"{path}: lists the same path more than once: {dupes[:5]}")
    manifest["sha256"] = manifest["sha256"].astype("object").where(manifest["sha256"].notna(), None)
    # A blank genre must read as an unknown genre, not as a null that set checks skip.
    manifest["genre"] = manifest["genre"].fillna("")
    manifest["track_id"] = manifest["track_id"].fillna("")
    return manifest


def _resolve_duplicates(
    clips: pd.DataFrame, flagged: set[str], failures: dict[str, dict[str, str]], excluded: set[str]
) -> None:
    """Keep one copy of each duplicated audio content; mark the others "duplicate of <kept>".

    GX flags every member of a group. The copy kept is the first by path among copies that pass
    every other check and are in the split, so a good copy is never dropped for a faulty one.
    """
    rows = clips[clips["path"].isin(flagged)]
    for _, group in rows.groupby("audio_sha256", sort=True):

        def rank(path: str) -> tuple[bool, str]:
            return (bool(failures.get(path)) or path in excluded, path)

        members = sorted(group["path"], key=rank)
        kept, others = members[0], members[1:]
        for path in others:
            failures.setdefault(path, {})["duplicate"] = f"duplicate of {kept}"


def _resolve_repeated_ids(
    clips: pd.DataFrame, flagged: set[str], failures: dict[str, dict[str, str]], excluded: set[str]
) -> None:
    """Keep one file per track id; mark the others, naming the file that keeps the id.

    Track ids are file names without the extension, so ``rock/Track 01.mp3`` and
    ``jazz/Track 01.mp3`` collide; segments, splits and per-track scores are keyed by the id,
    so two tracks under one id would be scored as one. Kept as for duplicates: the first by
    path among files that pass every other check.
    """
    rows = clips[clips["path"].isin(flagged)]
    for track_id, group in rows.groupby("track_id", sort=True):

        def rank(path: str) -> tuple[bool, str]:
            return (bool(failures.get(path)) or path in excluded, path)

        members = sorted(group["path"], key=rank)
        for path in members[1:]:
            failures.setdefault(path, {})["track_id"] = (
                f"track id {track_id!r} repeats {members[0]} (track ids are file names "
                "without the extension and must be unique; rename one)"
            )


def _status_and_reason(
    clips: pd.DataFrame, failures: dict[str, dict[str, str]], excluded: set[str]
) -> pd.DataFrame:
    statuses, reasons = [], []
    for path in clips["path"]:
        parts = list(failures.get(path, {}).values())
        if path in excluded:
            parts.append(GTZAN_EXCLUDED_REASON)
        reasons.append("; ".join(parts))
        if failures.get(path):
            statuses.append("quarantined")
        elif path in excluded:
            statuses.append("excluded")
        else:
            statuses.append("accepted")
    return clips.assign(status=statuses, reason=reasons)


def _per_genre(clips: pd.DataFrame, genres: tuple[str, ...]) -> dict[str, dict[str, int]]:
    names = list(genres) + sorted(set(clips["genre"]) - set(genres))
    out: dict[str, dict[str, int]] = {}
    for genre in names:
        rows = clips[clips["genre"] == genre]
        counts = {"files": len(rows)}
        for status in ("accepted", "quarantined", "excluded"):
            counts[status] = int((rows["status"] == status).sum())
        for split in SPLITS:
            counts[split] = int((rows["split"] == split).sum())
        out[genre] = counts
    return out


def _listing(rows: pd.DataFrame) -> str:
    lines = [f"  {r.path}: {r.reason}" for r in rows.head(MESSAGE_FILES).itertuples()]
    if len(rows) > MESSAGE_FILES:
        lines.append(f"  ... and {len(rows) - MESSAGE_FILES} more")
    return "\n".join(lines)


def gx_run_name(layout: Layout) -> str:
    """The name of the GX run: the raw manifest's SHA-256, which pins every file's bytes.

    The reports are DVC outputs and must be the same bytes for the same data, so the run is
    named after what was validated, not after when (see :class:`~.expectations.GxSession`).
    """
    return f"raw-manifest-sha256-{file_sha256(layout.raw_manifest)[:16]}"


def _gtzan_assignment(
    clips: pd.DataFrame, layout: Layout
) -> tuple[dict[str, str | None], set[str]]:
    """GTZAN's fixed split per path, and the paths its filtered lists leave out."""
    by_track = gtzan_split(clips["track_id"])
    if not any(by_track.values()):
        raise ValidationFailed(
            f"{layout.raw_manifest}: none of the {len(clips)} track ids (e.g. "
            f"{clips['track_id'].iloc[0]!r}) is in torchaudio's GTZAN split lists, but "
            "validate.split.scheme is gtzan; for data that is not GTZAN set "
            "validate.split.scheme: stratified (or auto, which falls back to it)"
        )
    split_of = {p: by_track[t] for p, t in zip(clips["path"], clips["track_id"], strict=True)}
    return split_of, {p for p, s in split_of.items() if s is None}


def _fma_assignment(manifest: pd.DataFrame, layout: Layout) -> dict[str, str | None]:
    """FMA's official split per path, as fetch recorded it in the raw manifest."""
    if SOURCE_SPLIT not in manifest.columns:
        raise ValidationFailed(
            f"{layout.raw_manifest}: has no {SOURCE_SPLIT} column, but validate.split.scheme "
            "resolved to fma; fetch it again with data.source: fma (dvc repro fetch)"
        )
    try:
        return dict(source_split(list(manifest["path"]), list(manifest[SOURCE_SPLIT])))
    except ValueError as exc:
        raise ValidationFailed(f"{layout.raw_manifest}: {exc}") from exc


def _stable_assignment(clips: pd.DataFrame, split: Any) -> dict[str, str | None]:
    """Split per path, keyed by track id: a quarantined or added file moves no other track."""
    hashed = stable_split(clips["track_id"], split.val_fraction, split.test_fraction, split.seed)
    return {p: hashed[t] for p, t in zip(clips["path"], clips["track_id"], strict=True)}


def _quarantine(
    gxv: Any, session: Any, clips: pd.DataFrame, params: Params, excluded: set[str]
) -> tuple[pd.DataFrame, Any]:
    """The clip suite's verdicts as per-clip status and reasons, and the GX result."""
    checks = gxv.clip_checks(params.validate, tuple(params.data.genres))
    result = session.run(
        gxv.CLIP_SUITE, clips, [c.expectation for c in checks], index_column="path"
    )
    failures = gxv.clip_failures(clips, checks, result)
    duplicated = {p for p, f in failures.items() if f.pop(gxv.DUPLICATE_CHECK, None)}
    _resolve_duplicates(clips, duplicated, failures, excluded)
    repeated = {p for p, f in failures.items() if f.pop(gxv.TRACK_ID_CHECK, None)}
    _resolve_repeated_ids(clips, repeated, failures, excluded)
    return _status_and_reason(clips, failures, excluded), result


@dataclass(frozen=True)
class _Balance:
    counts: pd.DataFrame
    floor: float
    result: Any


def _balance(gxv: Any, session: Any, accepted: pd.DataFrame, params: Params) -> _Balance:
    counts = gxv.balance_table(accepted["genre"], tuple(params.data.genres))
    expectation, floor = gxv.balance_expectation(counts, params.validate.class_balance_tolerance)
    result = session.run(gxv.BALANCE_SUITE, counts, [expectation], index_column="genre")
    return _Balance(counts, floor, result)


def _summarise(
    clips: pd.DataFrame, params: Params, scheme: SchemeChoice, clip_ok: bool, balance: _Balance
) -> tuple[ValidationSummary, list[str]]:
    """The metrics DVC tracks, and every reason the data is unfit (empty when it passes)."""
    v = params.validate
    accepted = clips[clips["status"] == "accepted"]
    n_files = len(clips)
    n_quarantined = int((clips["status"] == "quarantined").sum())
    n_excluded = int((clips["status"] == "excluded").sum())
    eligible = n_files - n_excluded
    share = n_quarantined / eligible if eligible else 0.0
    per_split = {s: int((accepted["split"] == s).sum()) for s in SPLITS}

    problems: list[str] = []
    if share > v.max_quarantine_share:
        problems.append(
            f"{n_quarantined} of {eligible} files quarantined ({share:.1%}), more than "
            f"validate.max_quarantine_share ({v.max_quarantine_share:.1%}):\n"
            f"{_listing(clips[clips['status'] == 'quarantined'])}"
        )
    if not balance.result.success:
        listing = ", ".join(f"{r.genre}={r.accepted}" for r in balance.counts.itertuples())
        problems.append(
            f"classes are not balanced: accepted clips per genre {listing}; each needs at least "
            f"{balance.floor:g} = (1 - validate.class_balance_tolerance "
            f"{v.class_balance_tolerance:g}) x the largest count"
        )
    empty = [s for s in SPLITS if per_split[s] == 0]
    if accepted.empty:
        problems.append(f"no file passed validation ({n_files} listed, {n_excluded} excluded)")
    elif empty:
        problems.append(
            f"split {empty} would be empty (per split: {per_split}); add clips or change "
            "validate.split"
        )
    summary = ValidationSummary(
        n_files=n_files,
        n_accepted=len(accepted),
        n_quarantined=n_quarantined,
        n_excluded=n_excluded,
        quarantine_share=round(share, 6),
        max_quarantine_share=v.max_quarantine_share,
        scheme=scheme.scheme,
        scheme_reason=scheme.reason,
        gx_success=bool(clip_ok and balance.result.success),
        class_balance_ok=bool(balance.result.success),
        passed=not problems,
        per_split=per_split,
        per_genre=_per_genre(clips, tuple(params.data.genres)),
    )
    return summary, problems


def validate(
    params: Params, layout: Layout, progress: bool = True, workers: int = 2
) -> ValidationSummary:
    """Run the validate stage under ``layout``; raise :class:`ValidationFailed` if data is unfit.

    Always writes ``reports/validation/`` (quarantine.csv, clips.csv, gx_result.json, data_docs/,
    summary.json) once the files are decoded. Writes ``data/validated/manifest.csv`` only when
    the stage passes; a stale one is removed first, so no later stage trains on data that failed.
    """
    # GX takes seconds to import: only pay for it when the stage really runs.
    from genreflow.validation import expectations as gxv

    v = params.validate
    # Whatever happens below, a manifest from an earlier run must not outlive a failed one.
    layout.validated_manifest.unlink(missing_ok=True)
    manifest = _read_raw_manifest(layout)
    choice = choose_scheme(v.split.scheme, params.data.source, list(manifest["track_id"]))
    scheme = choice.scheme
    if scheme == "stratified":
        check_fractions(v.split.val_fraction, v.split.test_fraction)
    # FMA's split is read before decoding: a manifest without it fails in seconds, not hours.
    split_of: dict[str, str | None] = _fma_assignment(manifest, layout) if scheme == "fma" else {}
    clips = decode_table(
        manifest, layout.root, workers=workers, progress=progress, max_duration_s=v.max_duration_s
    )

    excluded: set[str] = set()
    if scheme == "gtzan":
        split_of, excluded = _gtzan_assignment(clips, layout)
    session = gxv.GxSession(gx_run_name(layout))
    clips, clip_result = _quarantine(gxv, session, clips, params, excluded)
    if scheme == "stratified":
        split_of = _stable_assignment(clips, v.split)
    clips["split"] = [
        split_of.get(p) if s == "accepted" else None
        for p, s in zip(clips["path"], clips["status"], strict=True)
    ]
    balance = _balance(gxv, session, clips[clips["status"] == "accepted"], params)
    summary, problems = _summarise(clips, params, choice, clip_result.success, balance)

    report.write_clip_table(layout.validation_clips, clips)
    report.write_quarantine(layout.validation_quarantine, clips)
    report.write_gx_results(
        layout.validation_gx_result,
        {gxv.CLIP_SUITE: clip_result, gxv.BALANCE_SUITE: balance.result},
    )
    report.write_data_docs(layout.validation_data_docs, session.build_data_docs)
    report.write_summary(layout.validation_summary, summary.to_dict())

    if problems:
        details = "\n".join(f"- {p}" for p in problems)
        raise ValidationFailed(
            f"validate failed for {layout.raw_manifest}:\n{details}\n"
            f"Full list with reasons: {layout.validation_quarantine}; "
            f"Data Docs: {layout.validation_data_docs / 'index.html'}"
        )
    report.write_validated_manifest(layout.validated_manifest, clips)
    return summary
