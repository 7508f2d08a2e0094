"""The shared stores around a retrain: which DVC remote, and whether both stores answer.

A laptop usually has no DVC remote and a local ``mlflow.db``; CI has both a remote and a
tracking server. Retrain behaves the same in both by asking DVC which remote is configured and
doing ``dvc pull`` / ``dvc push`` only when there is one. The reachability checks come first, so
an unreachable store fails in a second with its URL, not after minutes of training. They live in
:mod:`genreflow.retrain.store_checks` and are imported only when a store needs checking.
"""

from __future__ import annotations

from pathlib import Path

from genreflow.core.errors import GenreflowError
from genreflow.retrain.commands import Runner, tool


class RemoteError(GenreflowError, ValueError):
    """DVC remotes are configured, but none is the default."""


def _last_value(output: str) -> str:
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    return lines[-1] if lines else ""


def configured_remote(run: Runner) -> str | None:
    """The default DVC remote (``core.remote``), which a bare ``dvc pull`` / ``dvc push`` and
    :func:`genreflow.retrain.store_checks.check_dvc_remote` use; ``None`` when no remote is
    listed at all.

    Remotes without a default are an error rather than "no remote": a bare ``dvc push`` would
    fail on them, and silently skipping the push would lose this run's outputs for CI.
    """
    default = run("dvc config core.remote", [tool("dvc"), "config", "core.remote"], echo=False)
    if default.returncode == 0 and _last_value(default.output):
        return _last_value(default.output)
    listed = run("dvc remote list", [tool("dvc"), "remote", "list"], echo=False).output
    names = [
        line.split()[0]
        for line in listed.splitlines()
        if line.strip() and not line.startswith(("WARNING", "ERROR"))
    ]
    if names:
        raise RemoteError(
            f"DVC remote(s) {', '.join(names)} configured but none is the default; choose one "
            "with `dvc remote default NAME`"
        )
    return None


def is_http_uri(uri: str) -> bool:
    """A tracking server (``http(s)://``), as opposed to a file or SQLite store."""
    return uri.lower().startswith(("http://", "https://"))


def check_tracking_server(uri: str) -> None:
    """See :func:`genreflow.retrain.store_checks.check_tracking_server` (one line naming the URL
    if down)."""
    from genreflow.retrain.store_checks import check_tracking_server as check

    check(uri)


def check_dvc_remote(root: Path) -> None:
    """See :func:`genreflow.retrain.store_checks.check_dvc_remote` (one line naming the URL if
    unreachable)."""
    from genreflow.retrain.store_checks import check_dvc_remote as check

    check(root)


def pull_args(remote: str) -> list[str]:
    """``--allow-missing``: objects never pushed (a first CI run, a stage nobody pushed) are
    not an error; ``dvc repro`` rebuilds whatever the pull could not bring."""
    return [tool("dvc"), "pull", "--allow-missing", "-r", remote]


def push_args(remote: str) -> list[str]:
    return [tool("dvc"), "push", "-r", remote]
