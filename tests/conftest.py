"""Fixtures every test directory shares; their code lives in the importable :mod:`support`
package (``pyproject.toml`` puts ``tests/`` on ``sys.path``), so no conftest loads another.

- ``tiny``: the tiny in-process profile (:class:`support.tiny.TinyKit`);
- ``trained_tiny``: the session's one trained-and-evaluated tiny repository
  (:class:`support.trained.TrainedTiny`), read only; a module that changes it takes
  ``trained_tiny.copy(dir)``;
- ``trained_tiny_store``: ``trained_tiny`` with MLflow (environment and process-wide URIs)
  naming its store for one test.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from support import tiny as tiny_profile
from support import trained
from support.tiny import TinyKit, pointed_at
from support.trained import TrainedTiny


@pytest.fixture(scope="session")
def tiny() -> TinyKit:
    """The tiny profile's constants and helpers (see :class:`support.tiny.TinyKit`)."""
    return tiny_profile.kit()


@pytest.fixture(scope="session")
def trained_tiny(tmp_path_factory: pytest.TempPathFactory) -> TrainedTiny:
    """Both tiny networks trained and evaluated once per session (see
    :mod:`support.trained`). Read only: copy it (``.copy(dir)``) before changing anything."""
    return trained.build(tmp_path_factory)


@pytest.fixture()
def trained_tiny_store(
    trained_tiny: TrainedTiny, monkeypatch: pytest.MonkeyPatch
) -> Iterator[TrainedTiny]:
    """``trained_tiny``, with ``MLFLOW_TRACKING_URI`` and MLflow's process-wide URIs naming its
    store for this test (restored after): models and runs it logged load by their URIs,
    whatever store an earlier test pointed MLflow at."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", trained_tiny.uri)
    monkeypatch.delenv("MLFLOW_REGISTRY_URI", raising=False)
    with pointed_at(trained_tiny.uri):
        yield trained_tiny
