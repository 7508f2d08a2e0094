"""``genreflow retrain``, step by step; the same on a laptop and in CI.

1. **check options**: ``--set`` keys exist in ``params.yaml``; ``--base`` is a commit.
2. **check stores**: the MLflow tracking server (when ``MLFLOW_TRACKING_URI`` is http(s)) and
   the DVC remote (when one is configured) answer; otherwise stop, naming the URL.
3. **dvc pull** from the configured remote, if any: outputs already built elsewhere are reused.
4. **dvc repro**, or ``dvc exp run -S`` with overrides (see :mod:`genreflow.retrain.pipeline`).
5. **report**: ``reports/retrain.md`` (see :mod:`genreflow.retrain.report`).
6. **dvc push** to the configured remote, if any: the next machine pulls what this one built.

Nothing about the steps lives in a workflow file or the Makefile, so CI runs exactly what a
person runs. Each external effect goes through :class:`Tools`, which tests replace with fakes.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from genreflow.core.atomic import atomic_path
from genreflow.core.errors import GenreflowError
from genreflow.core.paths import Layout
from genreflow.retrain import remotes
from genreflow.retrain.commands import (
    Runner,
    StepError,
    StepResult,
    SubprocessRunner,
    telling_line,
    tool,
)
from genreflow.retrain.data_diff import GenreChange, diff_manifests, read_base_manifest
from genreflow.retrain.links import run_links, version_runs
from genreflow.retrain.outcome import Outcome, read_outcome
from genreflow.retrain.overrides import Override, parse_overrides
from genreflow.retrain.pipeline import fingerprint, pipeline_args, stages_run
from genreflow.retrain.report import Confusion, ReportInputs, read_confusion, render
from genreflow.sources.manifest import ManifestRow, read_manifest
from genreflow.tracking.store import resolve_tracking_uri

REPORT_NAME = "retrain.md"
ARCHS = ("cnn", "crnn")  # evaluate's confusion outputs, one per trained architecture


@dataclass(frozen=True)
class Tools:
    """Everything retrain touches outside this process (tests swap in fakes)."""

    run: Runner
    check_tracking_server: Callable[[str], None] = remotes.check_tracking_server
    check_dvc_remote: Callable[[Path], None] = remotes.check_dvc_remote
    base_manifest: Callable[[Path, str, str], list[ManifestRow]] = read_base_manifest
    run_links: Callable[[str, Sequence[str]], dict[str, str | None]] = run_links
    version_runs: Callable[[str, str | None, Sequence[str]], dict[str, str]] = version_runs


@dataclass(frozen=True)
class RetrainOptions:
    """What the command line says."""

    root: Path | None = None
    overrides: Sequence[str] = ()
    base: str = "HEAD"
    out: TextIO | None = field(default=None, compare=False)  # progress lines; default stdout


@contextlib.contextmanager
def step(name: str) -> Iterator[None]:
    """Name the step in any user error raised inside it (``StepError`` already does)."""
    try:
        yield
    except StepError:
        raise
    except GenreflowError as exc:
        raise StepError(f"{name}: {exc}") from exc


def resolve_base(run: Runner, base: str) -> str:
    """The commit ``base`` names; a user error when the repository has no such commit."""
    found = run(
        "check options",
        ["git", "rev-parse", "--verify", "--quiet", f"{base}^{{commit}}"],
        echo=False,
        check=False,
    )
    sha = found.output.strip().splitlines()[-1] if found.output.strip() else ""
    if found.returncode != 0 or not sha:
        raise StepError(
            f"check options: --base {base!r} is not a commit of this repository "
            "(in CI, fetch it first: `git fetch origin <branch>`)"
        )
    return sha


def dvc_markdown(result: StepResult) -> str:
    """DVC's ``--md`` output, with its warnings moved below the table; a failure as one line."""
    if result.returncode != 0:
        return f"Unavailable: {telling_line(result.output)}"
    lines = result.output.splitlines()
    warnings = [f"> {line}" for line in lines if line.startswith("WARNING")]
    body = [line for line in lines if not line.startswith("WARNING")]
    return "\n".join([*body, *([""] + warnings if warnings else [])]).strip()


def data_changes(tools: Tools, layout: Layout, base: str) -> list[GenreChange] | str:
    """Per-genre clip differences against ``base``, or a line saying why there are none."""
    rel = layout.relative(layout.raw_manifest)
    try:
        current = read_manifest(layout.raw_manifest)
    except (OSError, ValueError) as exc:
        return f"Unavailable: {exc}"
    try:
        before = tools.base_manifest(layout.root, base, rel)
    except Exception as exc:  # noqa: BLE001 - a base without data must not fail the retrain
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return f"Unavailable: no `{rel}` at `{base}` ({first})"
    return diff_manifests(before, current)


def confusions(layout: Layout) -> list[Confusion]:
    found = []
    for arch in ARCHS:
        png = layout.confusion(arch, "png").relative_to(layout.reports_dir).as_posix()
        c = read_confusion(arch, layout.confusion(arch, "csv"), png)
        if c is not None:
            found.append(c)
    return found


def _command_text(args: Sequence[str]) -> str:
    return " ".join([Path(args[0]).name, *args[1:]])


def write_report(
    tools: Tools,
    layout: Layout,
    base: str,
    base_sha: str,
    outcome: Outcome,
    pipeline: tuple[Sequence[str], str],
    stores: tuple[str, str | None],
) -> Path:
    """Gather the report's inputs (DVC diffs, manifests, runs) and write it atomically."""
    args, output = pipeline
    tracking_uri, remote = stores
    dvc = tool("dvc")
    params = tools.run("report", [dvc, "params", "diff", base, "--md"], echo=False, check=False)
    metrics = tools.run("report", [dvc, "metrics", "diff", base, "--md"], echo=False, check=False)
    name = (outcome.promotion or {}).get("registered_model")
    runs = tools.version_runs(tracking_uri, name, [str(d["version"]) for d in outcome.decisions])
    inputs = ReportInputs(
        outcome=outcome,
        base=base,
        base_sha=base_sha,
        command=_command_text(args),
        stages=stages_run(output),
        tracking_uri=tracking_uri,
        remote=remote,
        params_diff=dvc_markdown(params),
        metrics_diff=dvc_markdown(metrics),
        data=data_changes(tools, layout, base),
        confusions=confusions(layout),
        runs=runs,
        links=tools.run_links(tracking_uri, list(runs.values())),
    )
    path = layout.reports_dir / REPORT_NAME
    with atomic_path(path) as tmp:
        tmp.write_text(render(inputs), encoding="utf-8")
    return path


def write_failure_report(layout: Layout, error: BaseException) -> Path:
    """A one-line report for a failed retrain, so CI never shows an earlier run's report as
    this run's result."""
    path = layout.reports_dir / REPORT_NAME
    text = f"# Retraining report\n\n- **Outcome:** failed: {error} (exit code 1)\n"
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return path


def retrain(options: RetrainOptions, tools: Tools | None = None) -> Outcome:
    """Run the steps in the module docstring; returns the :class:`Outcome` (its exit code).

    Raises :class:`StepError` (a user error naming the step) when a step fails, after
    replacing ``reports/retrain.md`` with a report of the failure.
    """
    layout = Layout.from_root(options.root)
    tools = tools or Tools(run=SubprocessRunner(layout.root))
    try:
        return _steps(options, layout, tools)
    except StepError as exc:
        write_failure_report(layout, exc)
        raise


def _steps(options: RetrainOptions, layout: Layout, tools: Tools) -> Outcome:
    out = options.out or sys.stdout

    def say(message: str) -> None:
        print(f"genreflow retrain: {message}", file=out, flush=True)

    with step("check options"):
        overrides: list[Override] = parse_overrides(options.overrides, layout.params)
        base_sha = resolve_base(tools.run, options.base)

    tracking_uri = resolve_tracking_uri(layout.root)
    with step("check stores"):
        found = remotes.default_remote(layout.root)
        remote = found.name if found is not None else None
        if remotes.is_http_uri(tracking_uri):
            tools.check_tracking_server(tracking_uri)
        if remote is not None:
            tools.check_dvc_remote(layout.root)
    if remote is None:
        say("no DVC remote configured: no dvc pull before the run, no dvc push after it")
    else:
        tools.run("dvc pull", remotes.pull_args(remote))

    args = pipeline_args(overrides)
    before = fingerprint(layout.promotion)
    result = tools.run("dvc exp run" if overrides else "dvc repro", args)
    outcome = read_outcome(layout.promotion, evaluated=fingerprint(layout.promotion) != before)

    with step("report"):
        report = write_report(
            tools,
            layout,
            options.base,
            base_sha,
            outcome,
            (args, result.output),
            (tracking_uri, remote),
        )
    say(f"report: {layout.relative(report)}")

    if remote is not None:
        tools.run("dvc push", remotes.push_args(remote))
    say(f"{outcome.summary()} (exit code {outcome.exit_code})")
    return outcome
