"""The pipeline tests' fixtures: ``pipeline_kit`` (the tiny profile, a committed copy of the
repository, the environment child processes get, and one ``dvc`` runner) and ``dvc_built``
(the tiny pipeline built once by ``dvc repro``). Their code lives in :mod:`support.repo`.
"""

from __future__ import annotations

import pytest

from support.repo import DvcBuild, PipelineKit, build_tiny_pipeline, kit


@pytest.fixture(scope="session")
def pipeline_kit() -> PipelineKit:
    """The pipeline tests' shared helpers and paths (see :class:`support.repo.PipelineKit`)."""
    return kit()


@pytest.fixture(scope="session")
def dvc_built(tmp_path_factory: pytest.TempPathFactory) -> DvcBuild:
    """The tiny pipeline, all six stages through ``dvc repro`` once per session.

    Why shared: ``test_dvc_pipeline.py`` reads this build (and promotes a champion in it, as a
    person would), and ``test_experiments.py`` starts its experiments from a copy of it, so
    their first ``dvc exp run`` retrains and evaluates instead of building the data stages
    again. Tests that change a repository work on a copy.
    """
    return build_tiny_pipeline(tmp_path_factory.mktemp("genreflow-copy"))
