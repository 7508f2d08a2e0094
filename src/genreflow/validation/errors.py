"""The validate stage's failure type, in its own module so every part can raise it."""

from __future__ import annotations

from genreflow.core.errors import GenreflowError


class ValidationFailed(GenreflowError, RuntimeError):
    """The raw data is not fit to train on; the message names the files and reasons."""
