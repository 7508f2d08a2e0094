"""DVC stage ``evaluate``: params ``evaluate`` -> ``reports/metrics.json``, confusion plots,
registry versions of ``genre-classifier`` and the ``champion`` decision."""

from genreflow.core.config import load_params
from genreflow.core.paths import Layout
from genreflow.core.runner import run_stage
from genreflow.pipeline.evaluate import evaluate_stage


def main() -> None:
    layout = Layout.from_root()
    evaluate_stage(load_params(layout.params), layout)


if __name__ == "__main__":
    run_stage("evaluate", main)
