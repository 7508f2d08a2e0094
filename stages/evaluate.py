"""DVC stage ``evaluate``: params ``evaluate`` -> ``reports/metrics.json``, confusion plots,
registry versions of ``genre-classifier`` and the ``champion`` decision."""

from genreflow.config import load_params
from genreflow.evaluation.stage import evaluate_stage
from genreflow.paths import Layout
from genreflow.runner import run_stage


def main() -> None:
    layout = Layout.from_root()
    evaluate_stage(load_params(layout.params), layout)


if __name__ == "__main__":
    run_stage("evaluate", main)
