"""``reports/retrain.md``: what a retrain changed and what it decided, for a PR or a CI page.

One Markdown file a reviewer reads top to bottom: the outcome and how it was reached, the
promotion decision with its evidence, the new data per genre, the params and metrics that moved
against the base revision (DVC's own ``--md`` tables), the confusion matrices and links to the
MLflow runs. Every section is built from inputs gathered beforehand (:class:`ReportInputs`), so
the rendering is pure and tested without running a pipeline. A section whose input could not be
had (a base revision without data, say) says why instead of failing the retrain.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from genreflow.retrain.data_diff import GenreChange
from genreflow.retrain.outcome import Outcome

MAX_NAMES = 12  # clip names listed per genre and kind before "and N more"


@dataclass(frozen=True)
class Confusion:
    """One model's confusion matrix: the PNG (relative to the report) and the CSV's rows."""

    arch: str
    png: str
    header: list[str]  # "actual", then the predicted genres
    rows: list[list[str]]


@dataclass(frozen=True)
class ReportInputs:
    """Everything the report shows, gathered by :mod:`genreflow.retrain.flow`."""

    outcome: Outcome
    base: str  # as given (HEAD, origin/main ...)
    base_sha: str
    command: str  # e.g. "dvc exp run -S train_cnn.lr=0.02"
    stages: Sequence[str]
    tracking_uri: str
    remote: str | None
    params_diff: str  # DVC's Markdown, or a line saying why there is none
    metrics_diff: str
    data: Sequence[GenreChange] | str  # the per-genre diff, or why it is unavailable
    confusions: Sequence[Confusion] = ()
    runs: dict[str, str] = field(default_factory=dict)  # version -> its source run (registry)
    links: dict[str, str | None] = field(default_factory=dict)  # run id -> its page


def read_confusion(arch: str, csv_path: Path, png_rel: str) -> Confusion | None:
    """The matrix written by evaluate (``index_label="actual"``), or ``None`` if absent."""
    if not csv_path.is_file():
        return None
    with open(csv_path, newline="", encoding="utf-8") as fh:
        table = list(csv.reader(fh))
    return Confusion(arch, png_rel, table[0], table[1:]) if table else None


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    def cell(v: Any) -> str:
        return str(v).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(cell(h) for h in header) + " |"]
    lines.append("|" + "|".join("---" for _ in header) + "|")
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return lines


def _fmt(value: Any, spec: str = ".4f") -> str:
    return format(value, spec) if isinstance(value, int | float) else "n/a"


def _overview(r: ReportInputs) -> list[str]:
    remote = (
        f"`{r.remote}` (pulled before the run, pushed after it)"
        if r.remote
        else "none configured (no `dvc pull`, no `dvc push`)"
    )
    stages = ", ".join(f"`{s}`" for s in r.stages) or "none (everything was up to date)"
    return [
        "# Retraining report",
        "",
        f"- **Outcome:** {r.outcome.summary()} (exit code {r.outcome.exit_code})",
        f"- **Command:** `{r.command}`",
        f"- **Stages run:** {stages}",
        f"- **Compared with:** `{r.base}` (`{r.base_sha[:12]}`)",
        f"- **DVC remote:** {remote}",
        f"- **MLflow tracking:** `{r.tracking_uri}`",
    ]


def _decision_rows(d: dict[str, Any], alpha: float) -> list[tuple[str, str]]:
    ev = d.get("evidence") or {}
    reference = d.get("reference") or "none"
    if d.get("reference_version"):
        reference = f"{reference} v{d['reference_version']}"
    interval = ev.get("interval")
    return [
        ("selected model", f"{d['arch']} (version {d['version']}), chosen on validation"),
        ("decision", f"**{d['decision']}**"),
        ("reason", d.get("reason") or ""),
        ("reference", reference),
        (
            "accuracy, candidate vs reference",
            f"{_fmt(ev.get('candidate_accuracy'))} vs {_fmt(ev.get('reference_accuracy'))}",
        ),
        ("difference", _fmt(ev.get("difference"), "+.4f")),
        (
            f"{1 - alpha:.0%} one-sided lower bound",
            _fmt(ev.get("lower_bound"), "+.4f"),
        ),
        (
            f"{1 - 2 * alpha:.0%} interval",
            f"[{interval[0]:+.4f}, {interval[1]:+.4f}]" if interval else "n/a",
        ),
        ("P(candidate better)", _fmt(ev.get("p_better"), ".3f")),
        ("test clips", str(d.get("n_clips", "n/a"))),
        ("rule", d.get("rule") or "none (no gate was applied)"),
    ]


def _promotion(r: ReportInputs) -> list[str]:
    lines = ["## Promotion decision", ""]
    promotion = r.outcome.promotion
    chosen = r.outcome.selected
    if promotion is None or chosen is None:
        return [*lines, "No decision: `reports/promotion.json` is missing or empty."]
    if not r.outcome.evaluated:
        lines += [
            "`evaluate` did not run in this retrain; this is the decision of the last "
            "evaluation, shown for reference.",
            "",
        ]
    alpha = float(chosen.get("alpha", promotion.get("promotion_alpha", 0.05)))
    lines += _table(["", ""], _decision_rows(chosen, alpha))
    champion = promotion.get("champion_version")
    lines += ["", f"Champion after this evaluation: {'v' + champion if champion else 'none'}."]
    for note in chosen.get("notes") or []:
        lines.append(f"- {note}")
    others = [d for d in r.outcome.decisions if d is not chosen]
    if others:
        lines += ["", "All candidates:", ""]
        lines += _table(
            ["model", "version", "decision", "val accuracy", "test accuracy"],
            [
                [
                    d["arch"],
                    d["version"],
                    d["decision"],
                    _fmt(d.get("val_accuracy")),
                    _fmt(d.get("test_accuracy")),
                ]
                for d in r.outcome.decisions
            ],
        )
    return lines


def _names(kind: str, names: Sequence[str]) -> str:
    shown = ", ".join(f"`{n}`" for n in names[:MAX_NAMES])
    more = f" and {len(names) - MAX_NAMES} more" if len(names) > MAX_NAMES else ""
    return f"{kind}: {shown}{more}"


def _data(r: ReportInputs) -> list[str]:
    lines = [f"## Data changes (data/raw/manifest.csv against `{r.base}`)", ""]
    if isinstance(r.data, str):
        return [*lines, r.data]
    touched = [c for c in r.data if c.touched]
    totals = (sum(c.before for c in r.data), sum(c.after for c in r.data))
    lines.append(f"{totals[0]} clips at the base, {totals[1]} now.")
    if not touched:
        return [*lines, "", "No clip was added, removed or changed."]
    lines += [""]
    lines += _table(
        ["genre", "clips before", "clips now", "added", "removed", "changed"],
        [
            [c.genre, c.before, c.after, len(c.added), len(c.removed), len(c.changed)]
            for c in touched
        ],
    )
    lines.append("")
    for c in touched:
        parts = [
            _names(kind, names)
            for kind, names in (("added", c.added), ("removed", c.removed), ("changed", c.changed))
            if names
        ]
        lines.append(f"- **{c.genre}**: " + "; ".join(parts))
    return lines


def _split_table(text: str) -> tuple[list[str], list[str], list[str]]:
    """DVC's ``--md`` output as (header and separator, rows, other lines)."""
    lines = text.strip().splitlines()
    table = [line for line in lines if line.startswith("|")]
    other = [line for line in lines if line.strip() and not line.startswith("|")]
    return table[:2], table[2:], other


def _metric_depth(row: str) -> int:
    """Dots in a row's metric name (``cnn.accuracy``: 1; ``cnn.per_class.jazz.f1``: 3)."""
    cells = [c.strip() for c in row.strip("|").split("|")]
    return cells[1].count(".") if len(cells) > 1 else 0


def _dvc_diff(
    title: str, text: str, nothing: str, fold_deeper_than: int | None = None
) -> list[str]:
    """A DVC diff table; with ``fold_deeper_than``, rows with deeper names (per-class and
    per-genre detail) go into a collapsed block so the headline numbers stay readable."""
    lines = [f"## {title}", ""]
    head, rows, other = _split_table(text)
    if not rows:
        return [*lines, *(other or [nothing])]
    if fold_deeper_than is None:
        return [*lines, *head, *rows, *([""] + other if other else [])]
    top = [r for r in rows if _metric_depth(r) <= fold_deeper_than]
    deep = [r for r in rows if _metric_depth(r) > fold_deeper_than]
    lines += [*head, *top] if top else ["Only per-class or per-genre metrics changed."]
    if deep:
        lines += [
            "",
            f"<details><summary>Per-class and per-genre changes ({len(deep)} rows)</summary>",
            "",
            *head,
            *deep,
            "",
            "</details>",
        ]
    return [*lines, *([""] + other if other else [])]


def _confusions(r: ReportInputs) -> list[str]:
    lines = ["## Confusion matrices (test clips; rows actual, columns predicted)"]
    if not r.confusions:
        return [*lines, "", "No confusion matrix found under `reports/evaluate/`."]
    for c in r.confusions:
        lines += ["", f"### {c.arch}", "", f"![{c.arch} confusion matrix]({c.png})", ""]
        lines += _table(c.header, c.rows)
    return lines


def _runs(r: ReportInputs) -> list[str]:
    lines = ["## MLflow runs", ""]
    decisions = r.outcome.decisions
    if not decisions:
        return [*lines, "No runs: there is no decision to link."]
    for d in decisions:
        run_id = r.runs.get(str(d["version"])) or d.get("run_id", "")  # older files held it
        url = r.links.get(run_id)
        target = f"[{run_id}]({url})" if url else f"`{run_id}`"
        found = f"run {target}" if run_id else "run not found in the model registry"
        lines.append(f"- {d['arch']} (version {d['version']}): {found}")
    if not any(r.links.values()):
        lines += ["", "The runs are in the local store; `make ui` shows them."]
    return lines


def render(r: ReportInputs) -> str:
    """The whole report as Markdown."""
    sections = [
        _overview(r),
        _promotion(r),
        _data(r),
        _dvc_diff(f"Params changes against `{r.base}`", r.params_diff, "No params changed."),
        _dvc_diff(f"Metrics changes against `{r.base}`", r.metrics_diff, "No metrics changed.", 1),
        _confusions(r),
        _runs(r),
    ]
    return "\n\n".join("\n".join(s) for s in sections) + "\n"
