"""Pure evaluation helpers for the ``evaluate`` stage.

- :mod:`.predict`: clip-level predictions on the feature store (mean segment logits, argmax);
- :mod:`.metrics`: clip-level accuracy with a bootstrap interval, macro-F1, per-class scores;
- :mod:`.baseline`: the classical mean/std log-mel + logistic-regression baseline, for context;
- :mod:`.confusion`: confusion rows for DVC plots, the matrix as CSV and as a PNG figure.

Nothing is imported here on purpose: importing the package stays cheap and free of side
effects (no matplotlib backend switch, no scikit-learn import) until a submodule is used.
"""
