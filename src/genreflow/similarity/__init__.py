"""Similar-song search: the champion's song vectors in a faiss index of the validated corpus.

- :mod:`~genreflow.similarity.catalogue`: which songs are indexed (the validated manifest).
- :mod:`~genreflow.similarity.index`: the on-disk index (faiss + catalogue + meta) and the
  guard that never compares vectors of two models.
- :mod:`~genreflow.similarity.build`: embed the corpus with the champion, score retrieval,
  write the index (for evaluate and :mod:`genreflow.pipeline.champion`).
- :mod:`~genreflow.similarity.query`: ``genreflow similar FILE``.
- :mod:`~genreflow.similarity.metrics`: same-genre precision@k and mAP.
"""
