"""Every user error prints one line and exits 1; no traceback unless GENREFLOW_DEBUG is set."""

from __future__ import annotations

import importlib
import pkgutil

import pytest

import genreflow
from genreflow.core.errors import GenreflowError
from genreflow.core.runner import run_stage


def _all_error_types() -> list[type[GenreflowError]]:
    """Every GenreflowError subclass in the package (each module imported, so none hides)."""
    for module in pkgutil.walk_packages(genreflow.__path__, "genreflow."):
        importlib.import_module(module.name)
    found: list[type[GenreflowError]] = []
    todo = [GenreflowError]
    while todo:
        cls = todo.pop()
        found.append(cls)
        todo.extend(cls.__subclasses__())
    return sorted(set(found), key=lambda c: f"{c.__module__}.{c.__qualname__}")


def _instance(cls: type[GenreflowError]) -> GenreflowError:
    """One instance, whatever the constructor takes (e.g. AudioDecodeError(path, reason))."""
    import inspect

    n_args = len(inspect.signature(cls.__init__).parameters) - 1  # minus self
    if n_args <= 1 or cls.__init__ is Exception.__init__:
        return cls("data/raw/x.wav: the reason")
    return cls("data/raw/x.wav", *(f"reason {i}" for i in range(1, n_args)))


ERROR_TYPES = _all_error_types()


def test_the_known_user_errors_are_genreflow_errors():
    names = {c.__name__ for c in ERROR_TYPES}
    assert {
        "ConfigError",
        "AudioDecodeError",
        "ValidationFailed",
        "SourceError",
        "DownloadError",
        "UnsafeArchiveError",
        "UnsupportedArchiveError",
        "RegistryError",
        "MissingRunError",
        "CheckpointError",
    } <= names


@pytest.mark.parametrize("cls", ERROR_TYPES, ids=lambda c: c.__name__)
def test_user_error_is_one_line_without_traceback(cls, capsys, monkeypatch):
    monkeypatch.delenv("GENREFLOW_DEBUG", raising=False)
    exc = _instance(cls)

    def main() -> None:
        raise exc

    with pytest.raises(SystemExit) as stop:
        run_stage("stage", main)
    assert stop.value.code == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert err.strip().splitlines() == [f"genreflow stage: error: {exc}"]


@pytest.mark.parametrize("cls", ERROR_TYPES[:1], ids=lambda c: c.__name__)
def test_debug_env_shows_the_traceback(cls, capsys, monkeypatch):
    monkeypatch.setenv("GENREFLOW_DEBUG", "1")

    def main() -> None:
        raise _instance(cls)

    with pytest.raises(SystemExit):
        run_stage("stage", main)
    assert "Traceback" in capsys.readouterr().err


def test_a_bug_keeps_its_traceback(capsys, monkeypatch):
    monkeypatch.delenv("GENREFLOW_DEBUG", raising=False)

    def main() -> None:
        raise ZeroDivisionError("a bug")

    with pytest.raises(SystemExit):
        run_stage("stage", main)
    assert "Traceback" in capsys.readouterr().err
