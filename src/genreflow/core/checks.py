"""The machinery behind :func:`genreflow.core.config.validate_params`, knowing nothing of
``Params``.

Two kinds of check, both data rather than code paths: a :class:`Range` declared on a field with
:func:`ranged` (one value against constants), and :class:`Rule` objects (checks that involve
several keys or a non-numeric value). The rules themselves (``RULES``) sit in ``config.py``
beside the dataclasses they check; this module only runs them, on any frozen dataclass tree.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Range:
    """Allowed values written as in maths: ``"> 0"``, ``">= 1"``, ``"<= 0"``, ``"[0, 1)"``.

    The spec string is both the check and the message, so the two cannot disagree.
    """

    spec: str

    def __post_init__(self) -> None:
        self._bounds()  # a malformed spec fails at import, not at the first bad value

    def _bounds(self) -> tuple[float, bool, float, bool]:
        """``(low, low_included, high, high_included)``; a missing side is infinite."""
        s = self.spec.replace(" ", "")
        for op in (">=", "<=", ">", "<"):
            if s.startswith(op):
                x = float(s[len(op) :])
                if op[0] == ">":
                    return x, op == ">=", math.inf, False
                return -math.inf, False, x, op == "<="
        if s[:1] not in ("[", "(") or s[-1:] not in ("]", ")") or s.count(",") != 1:
            raise ValueError(f"malformed range {self.spec!r}")
        low, high = s[1:-1].split(",")
        return float(low), s[0] == "[", float(high), s[-1] == "]"

    def contains(self, x: float) -> bool:
        if not math.isfinite(x):  # NaN compares False to everything; inf is never meant
            return False
        low, low_in, high, high_in = self._bounds()
        above = x > low or (low_in and x == low)
        below = x < high or (high_in and x == high)
        return above and below

    def __str__(self) -> str:
        return f"in {self.spec}" if self.spec[0] in "[(" else self.spec


def ranged(default: Any, spec: str) -> Any:
    """A dataclass field whose value (each item, for a tuple) must lie in ``Range(spec)``."""
    return field(default=default, metadata={"range": Range(spec)})


def range_of(f: dataclasses.Field[Any]) -> Range | None:
    """The :class:`Range` declared on field ``f``, if any."""
    return f.metadata.get("range")


@dataclass(frozen=True)
class Rule:
    """A check one field's :class:`Range` cannot express, reported against ``key``.

    ``needs`` names the other keys it reads: the rule is skipped while any of them (or ``key``)
    is out of range, so it never divides by a zero rate or repeats a reported mistake.
    ``must`` sees the params too, so the message can quote the other key's value.
    """

    key: str
    needs: tuple[str, ...]
    ok: Callable[[Any], bool]
    must: Callable[[Any], str]


def _show(value: Any) -> str:
    """A value in YAML's terms (lists, not tuples)."""
    return repr(list(value)) if isinstance(value, tuple) else repr(value)


def range_problems(obj: Any, prefix: str = "") -> list[tuple[str, str]]:
    """``(dotted key, message)`` for each value outside its field's declared :class:`Range`."""
    found: list[tuple[str, str]] = []
    for f in dataclasses.fields(obj):
        key, value = f"{prefix}{f.name}", getattr(obj, f.name)
        if dataclasses.is_dataclass(value):
            found += range_problems(value, f"{key}.")
        elif (allowed := range_of(f)) is not None:
            items = enumerate(value) if isinstance(value, tuple) else [(None, value)]
            for i, x in items:
                if not allowed.contains(x):
                    name = key if i is None else f"{key}[{i}]"
                    found.append((key, f"{name}: {x!r} is out of range; must be {allowed}"))
    return found


def find_problems(params: Any, rules: tuple[Rule, ...]) -> list[str]:
    """One message per bad value of the dataclass tree ``params``: declared ranges first, then
    ``rules``.

    A rule is skipped while a key it reads is out of range, so each mistake is reported once
    (``segment_hop_s: -1.5`` is out of range; that it is also below one hop is noise).
    """
    problems = range_problems(params)
    failed = {key for key, _ in problems}
    for rule in rules:
        if failed.isdisjoint((rule.key, *rule.needs)) and not rule.ok(params):
            value = _show(functools.reduce(getattr, rule.key.split("."), params))
            message = f"{rule.key}: {value} is not allowed; must be {rule.must(params)}"
            problems.append((rule.key, message))
    return [message for _, message in problems]
