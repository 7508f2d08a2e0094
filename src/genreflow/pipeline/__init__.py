"""The stages that span packages, and what follows a champion move.

- :mod:`.train`: the ``train_cnn`` / ``train_lstm`` stages (load, fit, log, export);
- :mod:`.evaluate`: the ``evaluate`` stage, which only orchestrates score, gate, report,
  index: :mod:`.candidate_runs` (each candidate's MLflow run, checked first),
  :mod:`.held_out_clips` (the test split as audio), :mod:`.candidates` (score one model),
  :mod:`.promotion_report` (``promotion.json`` and the decision log);
- :mod:`.champion`: champion moved -> rebuild the similar-song index -> record it, for
  ``genreflow promote``, ``rollback`` and ``index``; :mod:`.dvc_lock` records it.
"""
