"""What a training stage leaves for ``evaluate``: its scores, and where MLflow keeps its run.

``models/<arch>/run.json`` is a DVC output, so it holds content only (arch, section, experiment,
best epoch and score, epochs run, early stop): the same inputs give the same bytes. Training
writes it last, so its presence means the stage completed. Which MLflow run trained the model
is provenance: ``models/<arch>/mlflow_run_id`` names it (the one output allowed to differ
between two runs of the same commit), and MLflow holds the run's logged model.
"""

from __future__ import annotations

import json
from typing import Any

from genreflow.core.config import section_of_arch
from genreflow.core.paths import Layout
from genreflow.tracking.runs import find_run

#: Keys every ``run.json`` has; a file without them was not written by this training code.
RUN_INFO_KEYS = ("arch", "section", "best_epoch", "best_val_clip_accuracy")


def read_run_info(layout: Layout, arch: str) -> dict[str, Any]:
    """``models/<arch>/run.json``, or a clear error naming the stage that writes it."""
    path = layout.run_info(arch)
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: missing; run `dvc repro {section_of_arch(arch)}` to train the {arch} model"
        )
    try:
        info = json.loads(path.read_text())
    except ValueError as exc:
        raise ValueError(f"{path}: not valid JSON ({exc}); re-run the training stage") from exc
    for key in RUN_INFO_KEYS:
        if key not in info:
            raise ValueError(f"{path}: no {key!r}; re-run `dvc repro {section_of_arch(arch)}`")
    return info


def read_run_id(layout: Layout, arch: str) -> str | None:
    """The MLflow run id in ``models/<arch>/mlflow_run_id``; ``None`` when the file is missing
    or empty (the caller knows which fix to name)."""
    path = layout.run_id_file(arch)
    if not path.is_file():
        return None
    return path.read_text().strip() or None


def logged_model_uri(run: Any) -> str | None:
    """``models:/<model id>`` of the newest finished model that ``run`` logged, or ``None``.

    In MLflow 3 a logged model lives outside the run's artifacts, with its own random id; the
    run is its ``source_run_id``. (The store's ``status`` filter compares an int column with the
    name, so READY is checked here.) A stage killed after logging and resumed logs a second
    model into the same run: the newest is the one its ``model.pt`` matches.
    """
    from mlflow.entities import LoggedModelStatus
    from mlflow.tracking import MlflowClient

    models = MlflowClient().search_logged_models(
        experiment_ids=[run.info.experiment_id],
        filter_string=f"source_run_id = '{run.info.run_id}'",
        order_by=[{"field_name": "creation_timestamp", "ascending": False}],
    )
    ready = [m for m in models if m.status == LoggedModelStatus.READY]
    return ready[0].model_uri if ready else None


def run_exists(run_id: str) -> bool:
    """Whether the configured tracking store still holds (an undeleted) ``run_id``."""
    return find_run(run_id) is not None
