"""The shared stores around a retrain: which DVC remote, and whether both stores answer.

A laptop usually has no DVC remote and a local ``mlflow.db``; CI has both a remote and a
tracking server. Retrain behaves the same in both by asking DVC's config which remote is the
default (:func:`default_remote`, the only place that decides) and doing ``dvc pull`` /
``dvc push`` only when there is one. The reachability checks come first, so an unreachable
store fails in a second with its URL, not after minutes of training; they live in
:mod:`genreflow.retrain.store_checks`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from genreflow.retrain.commands import tool
from genreflow.retrain.store_checks import StoreConfigError


class RemoteError(StoreConfigError, ValueError):
    """The DVC configuration does not name one remote to use: remotes exist but none is the
    default, or the default names a remote that is not defined, or there is no ``.dvc``."""


@dataclass(frozen=True)
class DvcRemote:
    """The default DVC remote: its name and its merged config section (``url``, ...)."""

    name: str
    config: dict[str, Any]

    @property
    def url(self) -> str:
        return str(self.config.get("url", ""))


def default_remote(root: Path) -> DvcRemote | None:
    """The default DVC remote of the repository at ``root``; ``None`` when none is configured.

    The one place genreflow decides which DVC remote to use: retrain pulls from and pushes to
    it, and :func:`genreflow.retrain.store_checks.check_dvc_remote` checks it. The config is
    read with DVC's own loader, so every level DVC merges (system, global, repository,
    ``config.local``) counts and a local remote's relative URL comes back absolute.

    - no remote at all: ``None`` (a laptop without a shared store; retrain skips pull/push);
    - a default (``core.remote``) that is defined: that remote;
    - remotes but none is the default, **even when there is exactly one**: :class:`RemoteError`,
      one line naming them and ``dvc remote default NAME``. Not "no remote": a bare
      ``dvc push`` fails on such a repository too, and silently skipping the push would lose
      the run's outputs for the next machine. Not "the only one" either: DVC itself never
      picks a lone remote, so retrain, CI and a person's own ``dvc pull`` would then disagree
      about which store the repository uses;
    - a default naming a remote that is not defined: :class:`RemoteError`.
    """
    from dvc.config import Config, ConfigError

    root = Path(root)
    dvc_dir = root / ".dvc"
    if not dvc_dir.is_dir():
        raise RemoteError(f"{root}: not a DVC repository (no .dvc directory)")
    try:
        config = Config(dvc_dir=str(dvc_dir))
    except ConfigError as exc:
        detail = " ".join(str(exc).split()) or type(exc).__name__
        raise RemoteError(f"{dvc_dir}: unreadable DVC config: {detail}") from exc
    remotes: dict[str, Any] = dict(config.get("remote", {}))
    name = config["core"].get("remote")
    if name:
        if name not in remotes:
            raise RemoteError(
                f"default DVC remote {name!r} is not defined (`dvc remote list` in {root})"
            )
        return DvcRemote(name, dict(remotes[name]))
    if not remotes:
        return None
    names = sorted(remotes)
    fix = (
        f"make it the default with `dvc remote default {names[0]}`"
        if len(names) == 1
        else "choose one with `dvc remote default NAME`"
    )
    raise RemoteError(f"DVC remote(s) {', '.join(names)} configured but none is the default; {fix}")


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
