"""The ground floor every room stands on.

Errors, atomic writes, the repository layout, typed params and their range rules, and the
stage entry point. Nothing here knows of torch, MLflow or DVC.
"""
