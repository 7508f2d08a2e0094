"""``--set key=value`` for ``genreflow retrain``: checked against ``params.yaml`` up front.

The values go to ``dvc exp run -S`` unchanged (DVC parses them and rewrites ``params.yaml``,
keeping its comments). What is checked here is the key: a typo would otherwise surface only
after ``dvc pull`` and a DVC error about Hydra overrides; here it is one line, naming the key
and the closest real ones, before anything runs. Values are checked where every value is:
``genreflow.core.config.load_params`` at the start of each stage.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from genreflow.core.errors import GenreflowError


class OverrideError(GenreflowError, ValueError):
    """A ``--set`` option is malformed or names no key of ``params.yaml``."""


@dataclass(frozen=True)
class Override:
    """One ``--set`` option: a dotted ``params.yaml`` key and its new value, as typed."""

    key: str
    value: str

    def as_arg(self) -> str:
        return f"{self.key}={self.value}"


def params_keys(node: dict[str, Any], prefix: str = "") -> Iterator[str]:
    """Dotted names of every leaf of a params mapping (lists are leaves: ``data.genres``)."""
    for key, value in node.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict):
            yield from params_keys(value, f"{dotted}.")
        else:
            yield dotted


def parse_overrides(items: Iterable[str], params_file: Path) -> list[Override]:
    """``key=value`` strings as :class:`Override`; an unknown key raises :class:`OverrideError`."""
    items = list(items)
    if not items:
        return []
    known = set(params_keys(yaml.safe_load(Path(params_file).read_text()) or {}))
    parsed: list[Override] = []
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise OverrideError(f"--set {item!r}: expected KEY=VALUE, e.g. train_cnn.lr=0.02")
        if key not in known:
            close = difflib.get_close_matches(key, sorted(known), n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise OverrideError(f"--set {item!r}: {key} is not a key of {params_file.name}{hint}")
        parsed.append(Override(key, value.strip()))
    return parsed
