"""DVC stage ``evaluate``: params ``evaluate`` -> ``reports/metrics.json``, confusion plots,
registry versions of ``genre-classifier`` and the ``champion`` decision."""

from __future__ import annotations

from typing import TYPE_CHECKING

from genreflow.core.runner import run_pipeline_stage

if TYPE_CHECKING:
    from genreflow.core.config import Params
    from genreflow.core.paths import Layout


def main(params: Params, layout: Layout) -> None:
    # imported here, after run_pipeline_stage pinned the numerics torch will compute with
    from genreflow.pipeline.evaluate import evaluate_stage

    evaluate_stage(params, layout)


if __name__ == "__main__":
    run_pipeline_stage("evaluate", main)
