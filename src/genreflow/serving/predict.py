"""``genreflow predict`` as a tool: many files and folders, one bad file never stops a batch.

What the command adds around :class:`genreflow.serving.served.ServedModel`:

- **Discovery.** Arguments are files or folders; folders are walked recursively for audio
  files (:data:`AUDIO_SUFFIXES`), hidden entries skipped, in sorted order, so the same tree
  always prints the same lines. A file named explicitly is tried whatever its extension.
- **Per-file errors.** A file that cannot be decoded, a missing path or a folder without
  audio is one error line naming it and the reason (stderr; with ``--json`` also a JSON line
  with ``"error"`` on stdout, so a consumer sees every input once), and the batch goes on.
  A closing summary counts ok and failed on stderr; the exit code is 1 when any input failed.
- **Formats.** An aligned table streamed as files finish (columns known up front, since the
  file list and the genre names are), or JSON lines with every genre's probability.
- **Model loading.** One line naming the URI and what to run when it cannot be loaded (no
  champion yet, a wrong URI), instead of MLflow's traceback; a missing tracking database is
  reported without creating an empty one.
"""

from __future__ import annotations

import json
import math
import os
import sys
import traceback
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from genreflow.core.champion_uri import is_champion_uri
from genreflow.core.errors import GenreflowError

if TYPE_CHECKING:  # torch and mlflow load when a prediction is asked for
    from genreflow.core.paths import Layout
    from genreflow.serving.served import Analysis, ServedModel

AUDIO_SUFFIXES = frozenset({".wav", ".au", ".flac", ".ogg", ".mp3", ".aiff", ".aif"})
PROGRESS_MIN_FILES = 2  # a bar for a single file is noise
PATH_COLUMN_MAX = 60  # longer paths push their row's columns rather than widen every row
COMMAND = "predict"


class ModelLoadError(GenreflowError):
    """The model URI could not be loaded; the message names it and what to run."""


@dataclass(frozen=True)
class InputFailure:
    """An input that produced no prediction, and why (shown as one line)."""

    path: str
    reason: str


# --------------------------------------------------------------------------- discovery
def _is_audio(path: Path) -> bool:
    return path.suffix.lower() in AUDIO_SUFFIXES


def _walk_audio(folder: Path) -> list[Path]:
    """Audio files below ``folder`` (recursive, hidden entries and symlinked folders skipped),
    sorted by their path relative to ``folder``."""
    found: list[tuple[tuple[str, ...], Path]] = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        base = Path(dirpath)
        for name in filenames:
            path = base / name
            if not name.startswith(".") and _is_audio(path) and path.is_file():
                found.append((path.relative_to(folder).parts, path))
    return [path for _, path in sorted(found)]


def discover(inputs: Iterable[Path]) -> list[Path | InputFailure]:
    """The files to analyse, in argument order (each folder's files sorted), or a failure for
    an input that names nothing to analyse. A file reached twice is analysed once."""
    out: list[Path | InputFailure] = []
    seen: set[Path] = set()

    def add(path: Path) -> None:
        key = path.resolve()
        if key not in seen:
            seen.add(key)
            out.append(path)

    for given in inputs:
        path = Path(given)
        if path.is_dir():
            files = _walk_audio(path)
            if not files:
                suffixes = ", ".join(sorted(s.lstrip(".") for s in AUDIO_SUFFIXES))
                out.append(InputFailure(str(path), f"folder holds no audio files ({suffixes})"))
            for file in files:
                add(file)
        elif path.is_file():
            add(path)
        else:
            out.append(InputFailure(str(path), "no such file or folder"))
    return out


# --------------------------------------------------------------------------- model
def _store_missing(model_uri: str, tracking_uri: str) -> Path | None:
    """The absent SQLite file a registry/run URI would need, else ``None`` (never creates it)."""
    from genreflow.tracking.store import sqlite_path

    if not model_uri.startswith(("models:/", "runs:/")):
        return None
    db = sqlite_path(tracking_uri)
    return db if db is not None and not db.is_file() else None


def _hint(model_uri: str) -> str:
    if is_champion_uri(model_uri):
        return (
            "No champion yet? Run `dvc repro` (training and `evaluate` register and promote "
            "one) or `genreflow promote VERSION`, or pass --model-uri."
        )
    return "Check the URI: `genreflow registry` lists the registered versions."


def load_served_model(model_uri: str, tracking_uri: str) -> ServedModel:
    """:meth:`ServedModel.load` with failures turned into one :class:`ModelLoadError` line."""
    from genreflow.serving.served import ServedModel

    return _load_or_explain(model_uri, tracking_uri, lambda: ServedModel.load(model_uri))


def _load_or_explain(
    model_uri: str, tracking_uri: str, load: Callable[[], ServedModel]
) -> ServedModel:
    """``load()``, with a missing store and MLflow's failures as one :class:`ModelLoadError`
    line naming ``model_uri`` and what to run."""
    db = _store_missing(model_uri, tracking_uri)
    if db is not None:
        raise ModelLoadError(
            f"cannot load {model_uri}: no MLflow store at {db}. {_hint(model_uri)}"
        )
    from mlflow.exceptions import MlflowException

    try:
        return load()
    except (GenreflowError, MlflowException, OSError, ValueError) as exc:
        text = str(exc).strip().removeprefix(f"{model_uri}: ")
        reason = text.splitlines()[0].rstrip(".") if text else type(exc).__name__
        # a store/lookup failure gets the hint; a model that loaded but is unusable (its
        # message already says what to do) does not
        hint = f" {_hint(model_uri)}" if isinstance(exc, MlflowException | OSError) else ""
        raise ModelLoadError(f"cannot load {model_uri}: {reason}.{hint}") from exc


def load_champion_model(layout: Layout, registered_model: str) -> ServedModel:
    """The champion of ``registered_model``, from the verified local copy when it is current
    (no MLflow import: :mod:`genreflow.serving.fast_champion`), else through MLflow (which
    refreshes the copy), with failures turned into one :class:`ModelLoadError` line."""
    from genreflow.core.champion_uri import champion_uri
    from genreflow.serving.fast_champion import cached_champion, refresh_champion, registry_uri

    served = cached_champion(layout, registered_model)
    if served is not None:
        return served
    uri = champion_uri(registered_model)
    return _load_or_explain(
        uri, registry_uri(layout), lambda: refresh_champion(layout, registered_model)
    )


def analyse(served: ServedModel, path: Path) -> Analysis:
    """One file through the served model: decoded in blocks and scored in windows, so a long
    recording needs the memory of a window (:meth:`ServedModel.analyse`)."""
    return served.analyse(path)


# --------------------------------------------------------------------------- formatting
def format_duration(seconds: float) -> str:
    """``12.3 s`` for clips, ``3:28`` / ``1:00:00`` for tracks and recordings."""
    if not math.isfinite(seconds):
        return "?"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def json_line(result: Analysis) -> str:
    """``{"path", "genre", "probabilities" (every genre, best first), "duration_s"}``."""
    return json.dumps(
        {
            "path": str(result.path),
            "genre": result.genre,
            "probabilities": {g: float(p) for g, p in result.probabilities.items()},
            "duration_s": round(float(result.duration_s), 3),
        }
    )


def json_error_line(failure: InputFailure) -> str:
    return json.dumps({"path": failure.path, "error": failure.reason})


@dataclass(frozen=True)
class Table:
    """Column widths for streaming aligned rows: path, genre, top probabilities, duration."""

    path_w: int
    genre_w: int
    top: int

    @classmethod
    def for_run(cls, paths: Sequence[str], genres: Sequence[str], top: int) -> Table:
        path_w = min(PATH_COLUMN_MAX, max([len("path"), *(len(p) for p in paths)]))
        genre_w = max([len("genre"), *(len(g) for g in genres)])
        return cls(path_w, genre_w, max(1, min(top, len(genres) or 1)))

    @property
    def probs_w(self) -> int:
        return self.top * (self.genre_w + 7) - 2  # "name 0.00" per genre, two spaces between

    def header(self) -> str:
        return self._row("path", "genre", f"top {self.top}", "duration")

    def row(self, result: Analysis) -> str:
        best = list(result.probabilities.items())[: self.top]
        probs = "  ".join(f"{g} {p:.2f}".ljust(self.genre_w + 5) for g, p in best)
        return self._row(
            str(result.path), result.genre, probs.rstrip(), format_duration(result.duration_s)
        )

    def _row(self, path: str, genre: str, probs: str, duration: str) -> str:
        cells = [path.ljust(self.path_w), genre.ljust(self.genre_w), probs.ljust(self.probs_w)]
        return "  ".join(cells) + "  " + duration.rjust(8)


# --------------------------------------------------------------------------- running
@dataclass(frozen=True)
class Summary:
    ok: int
    failed: int

    @property
    def exit_code(self) -> int:
        return 1 if self.failed else 0

    def line(self) -> str:
        total = self.ok + self.failed
        noun = "input" if total == 1 else "inputs"
        return f"genreflow {COMMAND}: {self.ok} ok, {self.failed} failed ({total} {noun})"


def _failure_from(path: Path, exc: BaseException) -> InputFailure:
    """One line's worth of reason; the path is not repeated when the message starts with it."""
    from genreflow.core.runner import is_user_error

    reason = getattr(exc, "reason", None) or str(exc).strip() or type(exc).__name__
    for prefix in (f"{path}: ", f"{path.resolve()}: "):
        if reason.startswith(prefix):
            reason = reason[len(prefix) :]
    if not is_user_error(exc):
        reason = f"{type(exc).__name__}: {reason}"
    return InputFailure(str(path), reason.splitlines()[0])


def _analyse_or_fail(served: ServedModel, path: Path) -> Analysis | InputFailure:
    """The file's Analysis, or an :class:`InputFailure` naming it; an unexpected error also
    becomes a failure line (traceback with ``GENREFLOW_DEBUG=1``) and never stops the batch."""
    try:
        return analyse(served, path)
    except Exception as exc:  # noqa: BLE001 - one bad file must not stop the batch
        if os.environ.get("GENREFLOW_DEBUG"):
            traceback.print_exception(exc)
        return _failure_from(path, exc)


def _progress_enabled(quiet: bool, n_files: int, err: TextIO) -> bool:
    isatty = getattr(err, "isatty", None)
    return not quiet and n_files >= PROGRESS_MIN_FILES and bool(isatty and isatty())


def run_predict(
    served: ServedModel,
    inputs: Sequence[Path],
    *,
    as_json: bool = False,
    top: int = 3,
    quiet: bool = False,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> Summary:
    """Analyse every file ``inputs`` name, print one row (or JSON line) per file and one
    error line per failure, then the summary; returns the :class:`Summary`."""
    from tqdm import tqdm

    out = out or sys.stdout
    err = err or sys.stderr
    items = discover(inputs)
    n_files = sum(not isinstance(i, InputFailure) for i in items)
    table = None
    if not as_json:
        table = Table.for_run(
            [str(i.path if isinstance(i, InputFailure) else i) for i in items],
            list(served.genres),
            top,
        )
    ok = failed = 0
    with tqdm(
        total=n_files,
        unit="file",
        file=err,
        disable=not _progress_enabled(quiet, n_files, err),
        leave=False,
    ) as bar:
        if table is not None and n_files:
            tqdm.write(table.header(), file=out)
        for item in items:
            result = item
            if not isinstance(item, InputFailure):
                result = _analyse_or_fail(served, item)
                bar.update(1)
            if isinstance(result, InputFailure):
                failed += 1
                tqdm.write(f"genreflow {COMMAND}: error: {result.path}: {result.reason}", file=err)
                if as_json:
                    tqdm.write(json_error_line(result), file=out)
            else:
                ok += 1
                tqdm.write(json_line(result) if table is None else table.row(result), file=out)
    summary = Summary(ok, failed)
    out.flush()
    print(summary.line(), file=err, flush=True)
    return summary
