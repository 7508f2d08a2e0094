"""Per-epoch records of a training stage: the DVC plots file and the MLflow run's metrics.

``reports/training/<arch>.csv`` holds one row per epoch (DVC plots: training curves); it is
rewritten after every epoch so a running stage can be watched with ``dvc plots show``. It is a
DVC output, so it holds content only: the epoch's wall time differs run to run and goes to
MLflow alone (metric ``epoch_seconds``).

``models/<arch>/mlflow_run_id`` names the MLflow run the checkpoint belongs to (a ``persist``
output like the checkpoint), so a killed stage that resumes from its checkpoint also resumes
its MLflow run instead of starting a second, partial one.
"""

from __future__ import annotations

import contextlib
import csv
from pathlib import Path
from typing import Any

from genreflow.core.atomic import atomic_path
from genreflow.core.config import Params
from genreflow.core.paths import Layout
from genreflow.tracking.runs import training_run

CSV_COLUMNS = (
    "epoch",
    "train_loss",
    "train_accuracy",
    "val_loss",
    "val_accuracy",
    "val_clip_accuracy",
    "lr",
)
#: MLflow metric name per EpochMetrics field: every CSV column, plus the epoch's wall time
#: (provenance, not content: MLflow only; ``epoch_seconds`` reads better as a duration).
METRIC_NAMES = {**{c: c for c in CSV_COLUMNS[1:]}, "seconds": "epoch_seconds"}


def write_epochs_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    """Atomically (re)write the DVC plots file, one row per epoch in epoch order."""
    with atomic_path(path) as tmp, tmp.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(CSV_COLUMNS), extrasaction="ignore")
        writer.writeheader()
        for row in sorted(rows, key=lambda r: int(r["epoch"])):
            writer.writerow(row)


def _checkpoint_history(path: Path) -> list[dict[str, Any]]:
    """Epoch rows already in a checkpoint (for the plots file of a resumed stage), or []."""
    from genreflow.training.checkpoint import CheckpointError, load_checkpoint

    try:
        state = load_checkpoint(path)
    except CheckpointError:
        return []
    return [dict(h) for h in state["history"]] if state else []


def _logged_steps(run_id: str) -> set[int]:
    """Epochs whose metrics this run already holds (so a resumed run is not duplicated)."""
    from mlflow.tracking import MlflowClient

    key = METRIC_NAMES["val_clip_accuracy"]
    return {int(m.step) for m in MlflowClient().get_metric_history(run_id, key)}


class EpochLogger:
    """Receives epochs from the training loop; owns the plots file and the MLflow run.

    The MLflow run is opened by :meth:`start`, which the loop calls once it knows whether it
    resumed from its checkpoint and before the first epoch writes one: the run id file exists
    before any checkpoint it belongs to, so a job killed right after epoch 1 continues its run
    when resumed. Only a resumed loop continues the previous run, and only epochs that run does
    not hold yet are logged.
    """

    def __init__(
        self, layout: Layout, params: Params, section: str, stack: contextlib.ExitStack
    ) -> None:
        arch = getattr(params, section).arch
        self.layout, self.params, self.section, self.arch = layout, params, section, arch
        self.stack = stack
        self.rows: dict[int, dict[str, Any]] = {
            int(h["epoch"]): h for h in _checkpoint_history(layout.checkpoint(arch))
        }
        self.run_id: str | None = None
        self.logged: set[int] = set()
        self.resumed_run = False

    def open_run(self, resumed: bool) -> str:
        if self.run_id is not None:
            return self.run_id
        id_file = self.layout.run_id_file(self.arch)
        previous = id_file.read_text().strip() if id_file.is_file() else None
        active = self.stack.enter_context(
            training_run(self.layout, self.params, self.section, previous, resume=resumed)
        )
        self.run_id = active.info.run_id
        self.resumed_run = previous is not None and self.run_id == previous
        self.logged = _logged_steps(self.run_id) if self.resumed_run else set()
        with atomic_path(id_file) as tmp:
            tmp.write_text(self.run_id + "\n")
        return self.run_id

    def start(self, resumed_from: int | None) -> None:
        """The loop's ``on_start``: open (or continue) the MLflow run before training."""
        self.open_run(resumed=resumed_from is not None)

    def log_missing(self) -> None:
        import mlflow

        for epoch in sorted(set(self.rows) - self.logged):
            row = self.rows[epoch]
            # an epoch restored from the checkpoint has no timing (the checkpoint keeps none)
            values = {k: row[k] for k in METRIC_NAMES if row.get(k) or k != "seconds"}
            mlflow.log_metrics({METRIC_NAMES[k]: float(v) for k, v in values.items()}, step=epoch)
            self.logged.add(epoch)

    def __call__(self, metrics: Any) -> None:
        row = metrics.as_dict()
        epoch = int(row["epoch"])
        # a fresh start (epoch 1) or a restart from an earlier epoch supersedes later rows
        self.rows = {e: r for e, r in self.rows.items() if e < epoch}
        self.rows[epoch] = row
        write_epochs_csv(self.layout.training_curve(self.arch), list(self.rows.values()))
        self.open_run(resumed=epoch > 1)
        self.log_missing()

    def finish(self, history: list[Any], resumed_from: int | None) -> str:
        self.rows = {int(m.epoch): m.as_dict() for m in history}
        write_epochs_csv(self.layout.training_curve(self.arch), list(self.rows.values()))
        run_id = self.open_run(resumed=resumed_from is not None)
        self.log_missing()
        return run_id
