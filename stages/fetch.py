"""DVC stage ``fetch``: params ``data`` -> ``data/raw/`` and ``data/raw/manifest.csv``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from genreflow.core.runner import run_pipeline_stage

if TYPE_CHECKING:
    from genreflow.core.config import Params
    from genreflow.core.paths import Layout


def main(params: Params, layout: Layout) -> None:
    # imported here, after run_pipeline_stage pinned the numerics torch will compute with
    from genreflow.sources.stage import fetch

    fetch(params.data, layout, workers=params.runtime.workers)


if __name__ == "__main__":
    run_pipeline_stage("fetch", main)
