"""Which DVC command retrains, and how to tell afterwards what it did.

Without overrides it is ``dvc repro``: the plain, committed pipeline. With ``--set`` it is
``dvc exp run -S key=value`` **in the workspace** (no ``--temp``, no queue), for three reasons:

- ``dvc repro`` has no ``-S``; the alternative, our own YAML editor writing ``params.yaml``, would
  duplicate what DVC already does (its writer keeps the file's comments) and need its own tests;
- the run is recorded as a DVC experiment (``dvc exp show``), and its MLflow runs carry its
  ``DVC_EXP_NAME``, so the overrides are traceable from both sides;
- in the workspace the outputs land where the report, ``dvc push`` and the next ``git commit``
  expect them, and ``params.yaml`` keeps the new values, so ``dvc params diff`` shows them and a
  person commits them if the experiment is kept. ``--temp`` would throw the outputs away.

Whether ``evaluate`` ran is read from ``reports/promotion.json`` itself (written atomically, so
a run replaces the file): a stale decision from an earlier run must not be reported as new.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from genreflow.retrain.commands import tool
from genreflow.retrain.overrides import Override

_RAN = re.compile(r"Running stage '([^']+)'")
Fingerprint = tuple[int, int, int] | None


def pipeline_args(overrides: Sequence[Override]) -> list[str]:
    """``dvc repro``, or ``dvc exp run -S k=v ...`` when there are overrides (see module)."""
    if not overrides:
        return [tool("dvc"), "repro"]
    sets = [arg for o in overrides for arg in ("-S", o.as_arg())]
    return [tool("dvc"), "exp", "run", *sets]


def stages_run(output: str) -> list[str]:
    """Stages DVC ran, in order, from its ``Running stage '<name>'`` lines."""
    return list(dict.fromkeys(_RAN.findall(output)))


def fingerprint(path: Path) -> Fingerprint:
    """Identity of a file's current version (inode, mtime, size); ``None`` when absent."""
    try:
        st = Path(path).stat()
    except FileNotFoundError:
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_size)
