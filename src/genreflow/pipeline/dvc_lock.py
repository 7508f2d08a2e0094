"""Keep DVC's record of the similar-song index in step when it is rebuilt outside ``dvc repro``.

The index is an output of ``evaluate``, but ``genreflow promote``, ``rollback`` and ``index``
rebuild it by hand. Left alone, ``dvc status`` would then call ``evaluate`` changed, the next
``dvc repro`` would re-run it (re-deciding the champion a person just chose), and ``dvc push``
would carry the old index. So after such a rebuild the new index is committed as
``evaluate``'s output (``dvc.lock`` changes; commit it to git) -- but only when that is the
stage's one change: committing a stage also records its deps, and a stage whose code, params
or inputs changed since it last ran must be re-run, not marked as run.

This is pipeline knowledge (which stage owns the index, what DVC's status means for it), not
similarity knowledge, so it lives here beside :mod:`genreflow.pipeline.champion`, its caller.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

from genreflow.core.paths import Layout


@contextlib.contextmanager
def _quiet_dvc() -> Iterator[None]:
    """DVC logs its notes ("Updating lock file") at INFO, to stdout: keep the command's
    answer (promote's JSON) the only thing there."""
    log = logging.getLogger("dvc")
    level = log.level
    log.setLevel(logging.WARNING)
    try:
        yield
    finally:
        log.setLevel(level)


def record_rebuilt_index(layout: Layout) -> str:
    """Commit the rebuilt index to ``dvc.lock`` when it is evaluate's only change; says what
    happened, in words for the command's answer."""
    if not (layout.root / ".dvc").is_dir() or not (layout.root / "dvc.lock").is_file():
        return "not a DVC repository with a dvc.lock: nothing to record"
    from dvc.exceptions import DvcException
    from dvc.repo import Repo

    target = layout.relative(layout.similarity_index)  # as dvc.yaml and DVC's status name it
    try:  # DVC resolves targets (and refuses paths) against the working directory
        with (
            contextlib.chdir(layout.root),
            _quiet_dvc(),
            Repo(str(layout.root)) as repo,
        ):
            status = repo.status(targets=[target])
            changes = [c for entries in status.values() for c in entries]
            if not changes:
                return "dvc.lock already records this index"
            if changes != [{"changed outs": {target: "modified"}}]:
                return (
                    f"not recorded in dvc.lock: the stage that writes {target} has other "
                    f"changes ({changes}); `dvc repro` rebuilds it"
                )
            repo.commit(target, force=True)
    except DvcException as exc:
        return f"not recorded in dvc.lock ({exc}); `dvc commit {target}` records it"
    return f"recorded in dvc.lock (commit dvc.lock to git; `dvc push` shares {target})"
