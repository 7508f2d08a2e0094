"""``genreflow retrain`` (``make retrain``): pull, reproduce, report, push, and say by exit code
whether a new champion came out. One entry point for laptops and CI; see :mod:`.flow`.
"""

from genreflow.retrain.flow import RetrainOptions, Tools, retrain
from genreflow.retrain.outcome import (
    EXIT_FAILED,
    EXIT_NOT_PROMOTED,
    EXIT_PROMOTED,
    Outcome,
)

__all__ = [
    "EXIT_FAILED",
    "EXIT_NOT_PROMOTED",
    "EXIT_PROMOTED",
    "Outcome",
    "RetrainOptions",
    "Tools",
    "retrain",
]
