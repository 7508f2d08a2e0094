"""DVC stage ``spectrogramize``: params ``features`` (+ ``data.genres``) -> ``data/features/``
and the paper-style figures in ``reports/figures/``."""

from genreflow.core.config import load_params
from genreflow.core.paths import Layout
from genreflow.core.runner import run_stage
from genreflow.features.stage import spectrogramize


def main() -> None:
    layout = Layout.from_root()
    params = load_params(layout.params)
    spectrogramize(params.features, params.data.genres, layout, workers=params.runtime.workers)


if __name__ == "__main__":
    run_stage("spectrogramize", main)
