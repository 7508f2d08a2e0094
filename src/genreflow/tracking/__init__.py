"""MLflow.

The tracking store, runs and their tags, per-epoch logging, dataset inputs, the
training-track lists and links into the UI.
"""
