"""The one base class for errors a user can fix from the message alone.

Stages and the CLI print such an error as one line (``genreflow <stage>: error: ...``) and exit
1; anything else is a bug and keeps its traceback. ``GENREFLOW_DEBUG=1`` shows the traceback
for user errors too. Keeping the contract in a base class (not a list of types somewhere) means
a new error type cannot forget to join it.
"""

from __future__ import annotations


class GenreflowError(Exception):
    """An error whose message names the file or setting at fault and how to fix it."""


class StaleInputError(GenreflowError, ValueError):
    """Two inputs of a stage disagree (one is older than the other); the message names the
    stage to re-run."""
