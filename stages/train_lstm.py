"""DVC stage ``train_lstm``: params ``train_lstm`` (+ ``seed``) -> ``models/crnn/``.

Also one MLflow run with the CNN-LSTM's params, per-epoch metrics and the logged model."""

from genreflow.core.config import load_params
from genreflow.core.paths import Layout
from genreflow.core.runner import run_stage
from genreflow.pipeline.train import train_stage


def main() -> None:
    layout = Layout.from_root()
    train_stage(load_params(layout.params), "train_lstm", layout)


if __name__ == "__main__":
    run_stage("train_lstm", main)
