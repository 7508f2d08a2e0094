"""DVC stage ``train_cnn``: params ``train_cnn`` (+ ``seed``) -> ``models/cnn/``, an MLflow run."""

from genreflow.core.config import load_params
from genreflow.core.paths import Layout
from genreflow.core.runner import run_stage
from genreflow.pipeline.train import train_stage


def main() -> None:
    layout = Layout.from_root()
    train_stage(load_params(layout.params), "train_cnn", layout)


if __name__ == "__main__":
    run_stage("train_cnn", main)
