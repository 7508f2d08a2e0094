"""DVC stage ``validate``: params ``validate`` (+ ``data.genres``, ``data.source``) ->
``data/validated/manifest.csv`` with a per-track split, and ``reports/validation/``."""

from genreflow.core.config import load_params
from genreflow.core.paths import Layout
from genreflow.core.runner import run_stage
from genreflow.validation import validate


def main() -> None:
    layout = Layout.from_root()
    params = load_params(layout.params)
    validate(params, layout, workers=params.runtime.workers)


if __name__ == "__main__":
    run_stage("validate", main)
