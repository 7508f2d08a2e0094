"""The session's one trained tiny repository: both tiny networks trained, evaluated (reports,
registered versions, a ``champion``, robustness scores) and the similarity index built, in a
temporary directory with its own SQLite ``mlflow.db``.

Why one: training both networks and evaluating them is the slow part of every model test, and
the evaluate, robustness, similarity and UI tests all read the same result; building it once
per session (the ``trained_tiny`` fixture in ``tests/conftest.py``) instead of once per module
saves three builds. The build is read only. A test module that changes the store or the
repository (moves aliases, evaluates again, rebuilds the index) works on :meth:`TrainedTiny.copy`,
a private copy of the directory and its ``mlflow.db``.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any

import pytest

from genreflow.core.config import Params
from genreflow.core.paths import Layout
from support import tiny

TRAIN_SECTIONS = ("train_cnn", "train_lstm")


@dataclass(frozen=True)
class TrainedTiny:
    """What ``trained_tiny`` hands a test. ``runs`` maps each training run's name
    (``<section>-<arch>``, as the MLflow UI shows it) to its run id; ``result`` is what
    ``evaluate_stage`` returned."""

    layout: Layout
    uri: str  # sqlite:///<root>/mlflow.db
    params: Params
    result: dict[str, Any]
    runs: MappingProxyType = field(default_factory=lambda: MappingProxyType({}))

    def copy(self, dest: Path) -> TrainedTiny:
        """A private copy under ``dest``: the repository (data, models, reports, index,
        params.yaml) and ``mlflow.db``. The copy's store keeps pointing at this build's
        ``mlruns/`` for artifacts (MLflow stores absolute artifact URIs), which the copy only
        reads; runs it logs itself add new folders there and change none."""
        shutil.copytree(
            self.layout.root, dest, symlinks=True, ignore=shutil.ignore_patterns("mlruns")
        )
        uri = f"sqlite:///{(dest / 'mlflow.db').as_posix()}"
        return replace(self, layout=Layout.from_root(dest), uri=uri)


def build(factory: pytest.TempPathFactory) -> TrainedTiny:
    """Train both tiny networks and evaluate them once, as ``dvc repro`` would run the stages,
    with ``params.yaml`` written (promote / rollback read it to rebuild the index)."""
    import yaml

    from genreflow.core.config import to_dict
    from genreflow.pipeline.evaluate import evaluate_stage
    from genreflow.pipeline.train import train_stage

    root = factory.mktemp("trained-tiny")
    uri = tiny.empty_tracking_db(factory, root / "mlflow.db")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", uri)
        for var in ("DVC_STAGE", "DVC_EXP_NAME", "MLFLOW_REGISTRY_URI"):
            mp.delenv(var, raising=False)
        layout = tiny.make_tiny_repo(root)
        params = tiny.tiny_params()
        layout.params.write_text(yaml.safe_dump(to_dict(params), sort_keys=False))
        runs = {}
        for section in TRAIN_SECTIONS:
            summary = train_stage(params, section, layout, progress=False)
            runs[f"{section}-{summary['arch']}"] = summary["run_id"]
        result = evaluate_stage(params, layout, progress=False)
    return TrainedTiny(layout, uri, params, result, MappingProxyType(runs))
