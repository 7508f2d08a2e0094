"""The model registry: versions, the ``champion`` alias, and a promotion rule built on evidence.

Split by job:

- :mod:`~genreflow.registry.decision`: the rule as pure functions (selection on validation,
  paired bootstrap, gate, data identity); no MLflow, unit-tested alone;
- :mod:`~genreflow.registry.aliases`: aliases, histories, the rolled-back mark, the lock;
- :mod:`~genreflow.registry.versions`: registering candidates and tagging versions;
- :mod:`~genreflow.registry.rescore`: scoring a version on raw audio through serving's path;
- :mod:`~genreflow.registry.promotion`: what the evaluate stage calls;
- :mod:`~genreflow.registry.manual`: ``promote``, ``rollback`` and ``describe`` for people.

Import from those modules; this package module imports nothing heavy.
"""
