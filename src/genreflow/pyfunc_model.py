"""Shim: models logged before the package's rooms were split import their pyfunc from here.

Every registered genreflow model carries a three-line entry file (models from code) that
says ``from genreflow.pyfunc_model import GenreflowPyfunc``. The class now lives in
:mod:`genreflow.serving.pyfunc`; this name stays importable so those models keep loading.
New models import the new place (:data:`genreflow.serving.export.ENTRY_CODE`).
"""

from __future__ import annotations

from genreflow.serving.pyfunc import GenreflowPyfunc

__all__ = ["GenreflowPyfunc"]
