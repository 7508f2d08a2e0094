"""DVC stage ``fetch``: params ``data`` -> ``data/raw/`` and ``data/raw/manifest.csv``."""

from genreflow.core.config import load_params
from genreflow.core.paths import Layout
from genreflow.core.runner import run_stage
from genreflow.sources.stage import fetch


def main() -> None:
    layout = Layout.from_root()
    params = load_params(layout.params)
    fetch(params.data, layout, workers=params.runtime.workers)


if __name__ == "__main__":
    run_stage("fetch", main)
