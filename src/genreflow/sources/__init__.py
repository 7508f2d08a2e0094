"""Getting the corpus: synthetic, a local GTZAN copy, or a verified download."""

from genreflow.sources.fetch import fetch

__all__ = ["fetch"]
