"""Shared start-up for stage scripts and CLI commands: logging, and errors users can act on.

A failure the user can fix (bad params, an undecodable file, failed validation, a missing
input) prints one clear line naming the file and the reason, not a traceback; anything
else is a bug and keeps its traceback.
"""

from __future__ import annotations

import logging
import os
import sys
import traceback
from collections.abc import Callable
from typing import TYPE_CHECKING, NoReturn

if TYPE_CHECKING:
    from genreflow.core.config import Params
    from genreflow.core.paths import Layout


def user_error_types() -> tuple[type[BaseException], ...]:
    """Every error a user can act on from its message: genreflow's own, a missing input file,
    and MLflow's (which name the run, model or store at fault)."""
    from mlflow.exceptions import MlflowException

    from genreflow.core.errors import GenreflowError

    return (GenreflowError, FileNotFoundError, MlflowException)


def setup_logging() -> None:
    level = os.environ.get("GENREFLOW_LOG_LEVEL", "INFO").upper()
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", force=True)
    for noisy in ("alembic", "mlflow", "great_expectations", "urllib3", "numba", "matplotlib"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLogger().level))


def is_user_error(exc: BaseException) -> bool:
    """Errors a user can act on from the message alone (see :func:`user_error_types`)."""
    return isinstance(exc, user_error_types())


def fail(stage: str, exc: BaseException) -> NoReturn:
    if not is_user_error(exc) or os.environ.get("GENREFLOW_DEBUG"):
        traceback.print_exception(exc)
    print(f"genreflow {stage}: error: {exc}", file=sys.stderr)
    raise SystemExit(1)


def run_stage(stage: str, main: Callable[[], object]) -> None:
    """Run a stage's ``main`` with logging set up and user-facing errors made readable."""
    setup_logging()
    try:
        main()
    except KeyboardInterrupt:
        print(f"genreflow {stage}: interrupted", file=sys.stderr)
        raise SystemExit(130) from None
    except Exception as exc:  # noqa: BLE001 - the one place errors become exit codes
        fail(stage, exc)


def run_pipeline_stage(stage: str, main: Callable[[Params, Layout], object]) -> None:
    """Run DVC stage ``stage``: load ``params.yaml``, pin the numerics (before ``main`` imports
    anything that computes with torch; see :mod:`genreflow.core.numerics`), then
    ``main(params, layout)``, with :func:`run_stage`'s error and interrupt handling."""

    def go() -> None:
        from genreflow.core.config import load_params
        from genreflow.core.numerics import apply_numerics
        from genreflow.core.paths import Layout

        layout = Layout.from_root()
        params = load_params(layout.params)
        apply_numerics(params)
        main(params, layout)

    run_stage(stage, go)
