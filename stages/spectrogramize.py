"""DVC stage ``spectrogramize``: params ``features`` (+ ``data.genres``) -> ``data/features/``
and the paper-style figures in ``reports/figures/``."""

from genreflow.config import load_params
from genreflow.features.stage import spectrogramize
from genreflow.paths import Layout
from genreflow.runner import run_stage


def main() -> None:
    layout = Layout.from_root()
    params = load_params(layout.params)
    spectrogramize(params.features, params.data.genres, layout, workers=params.runtime.workers)


if __name__ == "__main__":
    run_stage("spectrogramize", main)
