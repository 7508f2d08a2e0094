"""Which DVC remote retrain uses, read from a real ``dvc init --no-scm`` repository.

One function decides (:func:`genreflow.retrain.remotes.default_remote`), and the store check
uses the same one, so retrain and its fail-fast check can never disagree about the store.
The user's and the machine's own DVC config are kept out (``DVC_GLOBAL_CONFIG_DIR`` /
``DVC_SYSTEM_CONFIG_DIR`` point at empty folders), so only the repository's config counts.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from genreflow.core.errors import GenreflowError
from genreflow.retrain.remotes import DvcRemote, RemoteError, default_remote
from genreflow.retrain.store_checks import StoreConfigError, check_dvc_remote

DVC = Path(sys.executable).with_name("dvc")


@pytest.fixture()
def isolated_dvc(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for var, name in (("DVC_GLOBAL_CONFIG_DIR", "global"), ("DVC_SYSTEM_CONFIG_DIR", "system")):
        (tmp_path / name).mkdir()
        monkeypatch.setenv(var, str(tmp_path / name))
    monkeypatch.setenv("DVC_NO_ANALYTICS", "1")


def dvc(root: Path, *args: str) -> None:
    subprocess.run(
        [str(DVC), *args], cwd=root, env=os.environ.copy(), check=True, capture_output=True
    )


@pytest.fixture()
def repo(isolated_dvc: None, tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    root.mkdir()
    dvc(root, "init", "--no-scm", "-q")
    return root


def one_line(exc: BaseException) -> str:
    text = str(exc)
    assert "\n" not in text, text
    return text


def test_no_remote_is_none(repo: Path) -> None:
    assert default_remote(repo) is None
    assert check_dvc_remote(repo) is None  # nothing to check, not an error


def test_one_default_remote_is_that_remote(repo: Path, tmp_path: Path) -> None:
    store = tmp_path / "store"
    store.mkdir()
    dvc(repo, "remote", "add", "-d", "local", str(store))
    found = default_remote(repo)
    assert isinstance(found, DvcRemote)
    assert (found.name, found.url) == ("local", str(store))
    check_dvc_remote(repo)  # the check looks at the same remote: it exists, so it passes


def test_several_remotes_none_default_is_one_line_naming_the_fix(repo: Path) -> None:
    dvc(repo, "remote", "add", "b", "/srv/b")
    dvc(repo, "remote", "add", "a", "/srv/a")
    with pytest.raises(RemoteError) as caught:
        default_remote(repo)
    text = one_line(caught.value)
    assert text.startswith("DVC remote(s) a, b configured but none is the default")
    assert "`dvc remote default NAME`" in text
    # the store check decides the same way (it used to see "no default" as nothing to check)
    with pytest.raises(StoreConfigError, match=r"a, b configured but none is the default"):
        check_dvc_remote(repo)


def test_a_lone_remote_that_is_not_default_is_not_guessed(repo: Path) -> None:
    dvc(repo, "remote", "add", "only", "/srv/only")
    with pytest.raises(RemoteError) as caught:
        default_remote(repo)
    text = one_line(caught.value)
    assert "only configured but none is the default" in text
    assert "`dvc remote default only`" in text
    dvc(repo, "remote", "default", "only")  # the fix the message names works
    found = default_remote(repo)
    assert found is not None and (found.name, found.url) == ("only", "/srv/only")


def test_default_naming_an_undefined_remote(repo: Path) -> None:
    dvc(repo, "config", "core.remote", "ghost")
    with pytest.raises(RemoteError, match="default DVC remote 'ghost' is not defined"):
        default_remote(repo)


def test_not_a_dvc_repository(isolated_dvc: None, tmp_path: Path) -> None:
    with pytest.raises(RemoteError, match="not a DVC repository") as caught:
        default_remote(tmp_path)
    assert isinstance(caught.value, GenreflowError)  # printed as one line by the runner
