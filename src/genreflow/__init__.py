"""genreflow: raw music audio to genre predictions and comparable song vectors, reproducibly."""

__version__ = "0.1.0"
