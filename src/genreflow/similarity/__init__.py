"""Similar-song search: the champion's song vectors in faiss indexes of the validated corpus
and of people's own music.

- :mod:`~genreflow.similarity.catalogue`: which songs are indexed (the validated manifest).
- :mod:`~genreflow.similarity.index`: the on-disk index (faiss + catalogue + meta) and the
  guard that never compares vectors of two models.
- :mod:`~genreflow.similarity.build`: embed the corpus with the champion, score retrieval,
  write the index (for evaluate and :mod:`genreflow.pipeline.champion`).
- :mod:`~genreflow.similarity.query`: ``genreflow similar FILE``.
- :mod:`~genreflow.similarity.metrics`: same-genre precision@k and mAP.
- :mod:`~genreflow.similarity.ann`: faiss index construction and the choice of exact or
  approximate search by catalogue size.
- A person's own music as named libraries: :mod:`~genreflow.similarity.library` (where they
  live, the snapshot, ``--list``), :mod:`~genreflow.similarity.library_store` (the SQLite
  journal that makes a run resumable), :mod:`~genreflow.similarity.library_index` (``genreflow
  index PATH... --name NAME``) and :mod:`~genreflow.similarity.library_query` (``genreflow
  similar FILE --index NAME``).
"""
