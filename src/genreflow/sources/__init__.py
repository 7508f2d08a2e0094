"""Getting the corpus: synthetic, a local GTZAN copy, or a verified download.

The stage entry point is :func:`genreflow.sources.stage.fetch`. This ``__init__`` imports
nothing on purpose: importing one light module (say :mod:`genreflow.sources.manifest`, which
the validate stage needs) must not execute the others, least of all the synthesiser, so that
each stage's DVC deps can list only the files it really runs.
"""
