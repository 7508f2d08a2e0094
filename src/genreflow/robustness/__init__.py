"""Robustness of a served model: the changes real audio brings, and scores under them.

:mod:`genreflow.robustness.perturb` turns a decoded clip into a perturbed one and writes it as
a real file (gain with clipping, stereo, another sample rate, another format, a noise floor);
:mod:`genreflow.robustness.score` sends each such file through the served model's file path
and reports accuracy and agreement with the clean prediction per perturbation.
"""
