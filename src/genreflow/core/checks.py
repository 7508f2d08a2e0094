"""The value checks behind :func:`genreflow.core.config.validate_params`.

Two kinds, both data rather than code paths: a :class:`Range` declared on a field with
:func:`ranged` (one value against constants), and the :data:`RULES` table (checks that involve
several keys or a non-numeric value). Kept apart from ``config.py`` so the dataclasses there
stay readable; this module imports nothing from it at run time, so there is no cycle.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from genreflow.core.config import Params


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
    ok: Callable[[Params], bool]
    must: Callable[[Params], str]


def _distinct_names(names: tuple[str, ...]) -> bool:
    return len(names) > 0 and len(set(names)) == len(names) and all(names)


def _hop_s(p: Params) -> float:
    return p.features.hop_length / p.features.sample_rate


RULES: tuple[Rule, ...] = (
    Rule(
        "data.genres",
        (),
        lambda p: _distinct_names(p.data.genres),
        lambda p: "a non-empty list of distinct, non-empty names",
    ),
    Rule(
        "features.hop_length",
        ("features.n_fft",),
        lambda p: p.features.hop_length <= p.features.n_fft,
        lambda p: f"<= features.n_fft ({p.features.n_fft}), or frames skip audio",
    ),
    Rule(
        "features.f_min",
        ("features.f_max",),
        lambda p: p.features.f_min < p.features.f_max,
        lambda p: f"< features.f_max ({p.features.f_max:g})",
    ),
    Rule(
        "features.f_max",
        ("features.sample_rate",),
        lambda p: p.features.f_max <= p.features.sample_rate / 2,
        lambda p: f"<= features.sample_rate / 2 ({p.features.sample_rate / 2:g}, Nyquist)",
    ),
    Rule(  # else the front-end silently rounds the hop up to one frame
        "features.segment_hop_s",
        ("features.hop_length", "features.sample_rate"),
        lambda p: p.features.segment_hop_samples >= p.features.hop_length,
        lambda p: f">= one STFT hop, hop_length / sample_rate ({_hop_s(p):.4g} s)",
    ),
    Rule(  # else each excerpt is padded up to one segment
        "features.excerpt.length_s",
        ("features.segment_s",),
        lambda p: p.features.excerpt.length_s >= p.features.segment_s,
        lambda p: f">= features.segment_s ({p.features.segment_s:g}), one whole segment",
    ),
    Rule(
        "validate.min_duration_s",
        ("features.segment_s",),
        lambda p: p.validate.min_duration_s >= p.features.segment_s,
        lambda p: f">= features.segment_s ({p.features.segment_s:g}), one whole segment",
    ),
    Rule(
        "validate.max_duration_s",
        ("validate.min_duration_s",),
        lambda p: p.validate.max_duration_s > p.validate.min_duration_s,
        lambda p: f"> validate.min_duration_s ({p.validate.min_duration_s:g})",
    ),
    Rule(
        "validate.split.test_fraction",
        ("validate.split.val_fraction",),
        lambda p: p.validate.split.val_fraction + p.validate.split.test_fraction < 1,
        lambda p: f"< 1 - val_fraction ({1 - p.validate.split.val_fraction:g}), or no train split",
    ),
)


def _arch_rule(section: str, arch: str, others: str) -> Rule:
    return Rule(
        f"{section}.arch",
        (),
        lambda p: getattr(p, section).arch == arch,
        lambda p: f"{arch!r} ({others}; each writes models/<arch>/)",
    )


@functools.cache
def arch_rules() -> tuple[Rule, ...]:
    """``<section>.arch`` must be the arch :data:`genreflow.core.config.SECTION_ARCH` pairs it
    with: each section owns models/<arch>/ and its MLflow run id, so a shared arch clobbers
    both. Built from that table on first use, since config imports this module."""
    from genreflow.core.config import SECTION_ARCH

    return tuple(
        _arch_rule(
            section,
            arch,
            "; ".join(f"{s} trains {a!r}" for s, a in SECTION_ARCH.items() if s != section),
        )
        for section, arch in SECTION_ARCH.items()
    )


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


def find_problems(params: Params) -> list[str]:
    """One message per bad value: declared ranges first, then :data:`RULES` and
    :func:`arch_rules`.

    A rule is skipped while a key it reads is out of range, so each mistake is reported once
    (``segment_hop_s: -1.5`` is out of range; that it is also below one hop is noise).
    """
    problems = range_problems(params)
    failed = {key for key, _ in problems}
    for rule in (*RULES, *arch_rules()):
        if failed.isdisjoint((rule.key, *rule.needs)) and not rule.ok(params):
            value = _show(functools.reduce(getattr, rule.key.split("."), params))
            message = f"{rule.key}: {value} is not allowed; must be {rule.must(params)}"
            problems.append((rule.key, message))
    return [message for _, message in problems]
