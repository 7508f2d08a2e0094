"""Reading ``models/<arch>/run.json``, the record a training stage leaves for ``evaluate``.

It holds the run id, the logged-model URI and the scores. Training writes it last, so its
presence means the stage completed.
"""

from __future__ import annotations

import json
from typing import Any

from genreflow.core.config import section_of_arch
from genreflow.core.paths import Layout
from genreflow.tracking.runs import find_run


def read_run_info(layout: Layout, arch: str) -> dict[str, Any]:
    """``models/<arch>/run.json``, or a clear error naming the stage that writes it."""
    path = layout.run_info(arch)
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: missing; run `dvc repro {section_of_arch(arch)}` to train the {arch} model"
        )
    try:
        info = json.loads(path.read_text())
    except ValueError as exc:
        raise ValueError(f"{path}: not valid JSON ({exc}); re-run the training stage") from exc
    for key in ("run_id", "model_uri"):
        if not info.get(key):
            raise ValueError(f"{path}: no {key!r}; re-run `dvc repro {section_of_arch(arch)}`")
    return info


def run_exists(run_id: str) -> bool:
    """Whether the configured tracking store still holds (an undeleted) ``run_id``."""
    return find_run(run_id) is not None
