"""The UI tests reuse the model tests' tiny profile (the ``tiny`` fixture).

Why a re-export instead of a copy: the tiny data is designed so both tiny networks learn it and
the baseline does not (see ``tests/model/conftest.py``), which is what gives the store a
``champion``. pytest imports every ``conftest.py`` as ``conftest``, so the model kit is loaded
here from its file under its own module name, never imported by name.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

_KIT_NAME = "genreflow_tests_model_kit"
_KIT_FILE = Path(__file__).resolve().parents[1] / "model" / "conftest.py"


def _load_model_kit():
    if _KIT_NAME in sys.modules:
        return sys.modules[_KIT_NAME]
    spec = importlib.util.spec_from_file_location(_KIT_NAME, _KIT_FILE)
    assert spec is not None and spec.loader is not None, _KIT_FILE
    module = importlib.util.module_from_spec(spec)
    sys.modules[_KIT_NAME] = module  # its dataclasses look their module up while being built
    spec.loader.exec_module(module)
    return module


tiny = _load_model_kit().tiny
