"""DVC stage ``train_lstm``: params ``train_lstm`` (+ ``seed``, ``threads``) -> ``models/crnn/``.

Also one MLflow run with the CNN-LSTM's params, per-epoch metrics and the logged model."""

from __future__ import annotations

from typing import TYPE_CHECKING

from genreflow.core.runner import run_pipeline_stage

if TYPE_CHECKING:
    from genreflow.core.config import Params
    from genreflow.core.paths import Layout


def main(params: Params, layout: Layout) -> None:
    # imported here, after run_pipeline_stage pinned the numerics torch will compute with;
    # world_size > 1 relaunches this script under torchrun (one rank per process)
    from genreflow.pipeline.launch import train_or_launch

    train_or_launch(params, "train_lstm", layout)


if __name__ == "__main__":
    run_pipeline_stage("train_lstm", main)
