"""The ``genreflow`` console script.

The pipeline commands run the same library functions as the DVC stage scripts, for
one-off use outside ``dvc repro``; registry commands (``promote``, ``rollback``) and
``ui`` are for people comparing and managing runs.

Every command's body runs through :func:`genreflow.core.runner.run_stage`, as the stage
scripts do, so both fail the same way: a user error is one line and exit 1, a bug keeps its
traceback, and Ctrl-C is ``interrupted`` and exit 130 (what shells and CI expect of SIGINT).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Annotated

import typer

from genreflow.core.runner import run_stage

app = typer.Typer(
    help=(
        "genreflow: raw music audio -> genre predictions, reproducibly.\n\n"
        "Run the whole pipeline with `dvc repro` (or `make repro`); these commands run single "
        "steps, manage the model registry and open the MLflow UI."
    ),
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)

RootOption = Annotated[
    Path | None,
    typer.Option(
        "--root", help="Repository root (default: the nearest directory holding dvc.yaml)."
    ),
]
NAME_HELP = "Registered model (default: params tracking.registered_model)."
QuietOption = Annotated[bool, typer.Option("--quiet", "-q", help="Hide progress bars.")]


def _context(root: Path | None):
    from genreflow.core.config import load_params
    from genreflow.core.paths import Layout

    layout = Layout.from_root(root)
    return layout, load_params(layout.params)


def _pinned_context(root: Path | None):
    """:func:`_context`, with the numerics pinned as the stages pin them (see
    genreflow.core.numerics): for commands that write what a DVC stage owns. Call it before
    importing anything that computes with torch."""
    from genreflow.core.numerics import apply_numerics

    layout, params = _context(root)
    apply_numerics(params)
    return layout, params


@app.command()
def fetch(root: RootOption = None, quiet: QuietOption = False) -> None:
    """Fetch raw audio per params `data` (synthetic, local or url) into data/raw/."""

    def go() -> None:
        layout, params = _pinned_context(root)
        from genreflow.sources.stage import fetch as do_fetch

        path = do_fetch(params.data, layout, progress=not quiet, workers=params.runtime.workers)
        typer.echo(f"manifest: {path}")

    run_stage("fetch", go)


@app.command()
def validate(root: RootOption = None, quiet: QuietOption = False) -> None:
    """Decode and check every clip (Great Expectations), quarantine bad ones, assign splits."""

    def go() -> None:
        layout, params = _pinned_context(root)
        from genreflow.validation import validate as do_validate

        summary = do_validate(params, layout, progress=not quiet, workers=params.runtime.workers)
        typer.echo(str(summary))

    run_stage("validate", go)


@app.command()
def spectrogramize(root: RootOption = None, quiet: QuietOption = False) -> None:
    """Compute the log-mel feature store in data/features/ and the figures."""

    def go() -> None:
        layout, params = _pinned_context(root)
        from genreflow.features.stage import spectrogramize as do_spec

        meta = do_spec(
            params.features,
            params.data.genres,
            layout,
            progress=not quiet,
            workers=params.runtime.workers,
        )
        typer.echo(f"segments: {meta['shape']}")

    run_stage("spectrogramize", go)


@app.command()
def train(
    model: Annotated[
        str, typer.Argument(help="cnn (params train_cnn) or crnn (params train_lstm).")
    ],
    root: RootOption = None,
    quiet: QuietOption = False,
) -> None:
    """Train one model on the feature store, tracked in MLflow; resumes from its checkpoint."""
    from genreflow.core.config import ConfigError, section_of_arch

    try:
        section = section_of_arch(model)
    except ConfigError as exc:
        raise typer.BadParameter(str(exc)) from exc

    def go() -> None:
        layout, params = _pinned_context(root)
        from genreflow.pipeline.train import train_stage

        train_stage(params, section, layout, progress=not quiet)

    run_stage("train", go)


@app.command()
def evaluate(root: RootOption = None, quiet: QuietOption = False) -> None:
    """Score both models on the test split, register them and decide the champion."""

    def go() -> None:
        layout, params = _pinned_context(root)
        from genreflow.pipeline.evaluate import evaluate_stage

        evaluate_stage(params, layout, progress=not quiet)

    run_stage("evaluate", go)


@app.command(
    epilog=(
        "Exit codes: 0 = a new champion was promoted; 3 = trained (or already up to date) "
        "but the champion did not change; 1 = a step failed (one line names it); "
        "2 = bad command line."
    )
)
def retrain(
    set_: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            "-S",
            metavar="KEY=VALUE",
            help="Override a params.yaml key for this run (repeatable); runs `dvc exp run -S`.",
        ),
    ] = None,
    base: Annotated[
        str,
        typer.Option(
            envvar="RETRAIN_BASE",
            help="Git revision the report compares params, metrics and data with.",
        ),
    ] = "HEAD",
    root: RootOption = None,
) -> None:
    """Retrain and report: dvc pull, dvc repro, reports/retrain.md, dvc push.

    Pull and push only when a DVC remote is configured; the remote and an
    http(s) MLFLOW_TRACKING_URI are checked for reachability first.
    The same command runs on a laptop and in CI (`make retrain`).
    """
    from genreflow.retrain import RetrainOptions
    from genreflow.retrain import retrain as do_retrain

    outcome = []
    run_stage(
        "retrain",
        lambda: outcome.append(
            do_retrain(RetrainOptions(root=root, overrides=tuple(set_ or ()), base=base))
        ),
    )
    raise typer.Exit(outcome[0].exit_code)


def _registry_action(
    command: str, name: str | None, root: Path | None, action, pinned: bool = False
) -> None:
    """Run ``action(registered_model_name, layout)`` against this repo's registry; print JSON.
    ``pinned``: the action rebuilds the similar-song index (evaluate's DVC output), so the
    numerics are pinned as the stage pins them."""
    from genreflow.tracking.store import configure_mlflow

    def go() -> None:
        layout, params = _pinned_context(root) if pinned else _context(root)
        configure_mlflow(layout, params.tracking.experiment)
        result = action(name or params.tracking.registered_model, layout)
        typer.echo(json.dumps(result, indent=2, default=str))

    run_stage(command, go)


@app.command()
def promote(
    version: Annotated[str, typer.Argument(help="Registered model version to make champion.")],
    name: Annotated[str | None, typer.Option(help=NAME_HELP)] = None,
    root: RootOption = None,
) -> None:
    """Point the `champion` alias at VERSION by hand (the old champion is remembered).

    The similar-song index then follows the new champion."""
    from genreflow.pipeline.champion import promote as do_promote

    _registry_action(
        "promote", name, root, lambda n, layout: do_promote(n, version, layout), pinned=True
    )


@app.command()
def rollback(
    name: Annotated[str | None, typer.Option(help=NAME_HELP)] = None,
    root: RootOption = None,
) -> None:
    """Move `champion` back to the previous champion version.

    The version rolled back from is marked `rolled_back`: automatic promotion never picks it
    again, only `genreflow promote VERSION` can. The similar-song index then follows."""
    from genreflow.pipeline.champion import rollback as do_rollback

    _registry_action("rollback", name, root, do_rollback, pinned=True)


@app.command()
def registry(
    name: Annotated[str | None, typer.Option(help=NAME_HELP)] = None,
    root: RootOption = None,
) -> None:
    """Show every version with its tags, the champion, and the promotion decision history."""
    from genreflow.registry.manual import describe

    _registry_action("registry", name, root, describe)


@app.command(
    epilog=(
        "Exit codes: 0 = every file predicted; 1 = a file or folder failed (one error line "
        "each on stderr, the others still predicted) or the model could not be loaded."
    )
)
def predict(
    paths: Annotated[
        list[Path],
        typer.Argument(
            help="Audio files and folders (searched recursively for wav, au, flac, ogg, mp3, "
            "aiff).",
            show_default=False,
        ),
    ],
    model_uri: Annotated[
        str | None,
        typer.Option(
            help="MLflow model URI (models:/NAME@ALIAS, models:/NAME/VERSION, runs:/...); "
            "default models:/<params tracking.registered_model>@champion."
        ),
    ] = None,
    name: Annotated[
        str | None, typer.Option(help="Registered model whose champion to use (instead of params).")
    ] = None,
    as_json: Annotated[
        bool,
        typer.Option(
            "--json",
            help='One JSON object per line: {"path", "genre", "probabilities", "duration_s"}.',
        ),
    ] = False,
    top: Annotated[int, typer.Option(min=1, help="How many genres the table shows per file.")] = 3,
    root: RootOption = None,
    quiet: QuietOption = False,
) -> None:
    """Predict the genre of audio files and folders with the champion (or any logged) model.

    A failing file prints one error line and the rest go on; a summary on stderr counts both.
    """
    if model_uri and name:
        raise typer.BadParameter("give --model-uri or --name, not both")
    summary = []

    def go() -> None:
        from genreflow.core.champion_uri import champion_of
        from genreflow.core.paths import Layout
        from genreflow.serving.predict import load_champion_model, load_served_model, run_predict

        layout = Layout.from_root(root)
        if model_uri is not None:
            registered = champion_of(model_uri)
        else:
            registered = name or _context(root)[1].tracking.registered_model
        if registered is not None:  # a champion: its verified local copy when current
            served = load_champion_model(layout, registered)
        else:  # any other logged model: through MLflow
            from genreflow.tracking.store import set_tracking

            served = load_served_model(model_uri, set_tracking(layout))
        summary.append(run_predict(served, paths, as_json=as_json, top=top, quiet=quiet))

    run_stage("predict", go)
    raise typer.Exit(summary[0].exit_code)


@app.command(
    epilog="Exit codes: 0 = neighbours printed; 1 = no index, a stale index or a bad file."
)
def similar(
    file: Annotated[Path, typer.Argument(help="Audio file to find similar songs for.")],
    k: Annotated[
        int | None,
        typer.Option(
            "-k", "--k", min=1, help="Neighbours to show (default: params evaluate.search.k)."
        ),
    ] = None,
    as_json: Annotated[
        bool,
        typer.Option(
            "--json",
            help='One JSON object: {"query", "model_version", "neighbours": [{"rank", '
            '"distance", "track_id", "genre", "split", "path"}]}.',
        ),
    ] = False,
    index: Annotated[
        str | None,
        typer.Option(
            "--index",
            help="Search this library (built by `genreflow index FOLDER... --name NAME`) "
            "instead of the validated corpus.",
        ),
    ] = None,
    root: RootOption = None,
) -> None:
    """Songs most similar to FILE, by the champion's song vectors: from your own library
    (--index NAME) or from the validated corpus.

    Distance is the cosine distance (1 - cosine similarity: 0 = the same direction). A FILE
    already in the library is recognised by its content and left out of its own answer. An
    index refuses to answer when the champion is not the model it was built with, and names
    the command that rebuilds it.
    """

    def go() -> None:
        from genreflow.similarity.query import find_similar, format_table

        layout, params = _context(root)
        if index is None:
            found = find_similar(file, layout, params, k or params.evaluate.search.k)
        else:
            found = _similar_in_library(layout, params, index, k or params.evaluate.search.k)
        if as_json:
            typer.echo(json.dumps(found.to_dict()))
        else:
            for line in format_table(found):
                typer.echo(line)

    def _similar_in_library(layout, params, name: str, k_: int):
        from genreflow.similarity.library_query import find_similar_in_library
        from genreflow.similarity.query import champion_version

        registered = params.tracking.registered_model
        return find_similar_in_library(
            file,
            layout,
            name,
            registered,
            k_,
            lambda: champion_version(layout, registered),
            lambda: _champion(layout, params),
        )

    run_stage("similar", go)


@app.command()
def numerics(
    against: Annotated[
        str | None,
        typer.Option(
            "--against",
            help="cnn or crnn: compare with the environment that trained models/<arch>/ "
            "(its MLflow run, named by models/<arch>/mlflow_run_id). Exit 1 if the recipe differs.",
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the fingerprint as JSON.")] = False,
    root: RootOption = None,
) -> None:
    """Print this machine's numeric environment as the stages pin it: what decides the bytes
    (instruction-set paths, MKL and oneDNN settings, threads, torch/CUDA versions) and the
    machine (CPU model, cores, GPU)."""
    outcome: list[int] = []

    def go() -> None:
        from genreflow.core.numerics import describe, numeric_environment, recipe_differences

        layout, _ = _pinned_context(root)
        mine = numeric_environment()
        if against is None:
            typer.echo(json.dumps(mine, indent=2) if as_json else describe(mine))
            return
        theirs, label = _trained_environment(layout, against)
        if as_json:
            typer.echo(json.dumps({"this_machine": mine, label: theirs}, indent=2))
        else:
            typer.echo(describe(mine, theirs, label))
        outcome.append(1 if recipe_differences(mine, theirs) else 0)

    run_stage("numerics", go)
    raise typer.Exit(outcome[0] if outcome else 0)


def _trained_environment(layout, against: str) -> tuple[dict, str]:
    """The recorded numeric environment of the run that trained ``against``'s model."""
    from genreflow.core.config import ConfigError, arch_of_section, section_of_arch
    from genreflow.tracking.numeric_env import recorded_numeric_environment
    from genreflow.tracking.store import set_tracking

    try:
        arch = arch_of_section(section_of_arch(against))
    except ConfigError as exc:
        raise typer.BadParameter(str(exc), param_hint="--against") from exc
    path = layout.run_id_file(arch)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing; train the {arch} model first")
    run_id = path.read_text().strip()
    set_tracking(layout)
    return recorded_numeric_environment(run_id), f"run {run_id[:12]} ({arch})"


@app.command(
    "index",
    epilog=(
        "Examples:\n\n"
        "  genreflow index ~/Music --name mine  # embed your music\n\n"
        "  genreflow index --name mine          # later: only what changed\n\n"
        "  genreflow index --list               # indexes, sizes, models\n\n"
        "  genreflow index                      # the corpus index, again\n\n"
        "Exit codes: 0 = done; 1 = a file failed (one line each; the rest were indexed) or the "
        "index could not be built."
    ),
)
def index_command(
    paths: Annotated[
        list[Path] | None,
        typer.Argument(
            help="Audio files and folders of a library (with --name; searched recursively "
            "like `genreflow predict`'s). Omit them to re-index the library's recorded ones.",
            show_default=False,
        ),
    ] = None,
    name: Annotated[
        str | None,
        typer.Option(
            "--name",
            help="Name of a library index (models/libraries/NAME). Without it, the corpus "
            "index of the validated data is rebuilt.",
        ),
    ] = None,
    list_: Annotated[
        bool, typer.Option("--list", help="List the indexes, their sizes and their models.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="With --list: JSON lines.")] = False,
    root: RootOption = None,
    quiet: QuietOption = False,
) -> None:
    """Build a similar-song index with the current champion: of your own music (--name), or
    of the validated corpus.

    A library run embeds only files it has not seen (by content hash), drops removed ones,
    and after Ctrl-C or a kill continues where it stopped. The corpus index also logs the
    champion's retrieval scores (test clips against train+val) on its run.
    """
    if list_ and (paths or name):
        raise typer.BadParameter("--list takes no paths or --name")
    if paths and not name:
        raise typer.BadParameter("give --name NAME to index your own files as a library")
    outcome: list[int] = []

    def go() -> None:
        if list_:
            _list_indexes(root, as_json)
        elif name is not None:
            outcome.append(_index_library(root, name, paths or [], quiet))
        else:
            _index_corpus(root, quiet)

    run_stage("index", go)
    raise typer.Exit(outcome[0] if outcome else 0)


def _list_indexes(root: Path | None, as_json: bool) -> None:
    from genreflow.core.paths import Layout
    from genreflow.similarity.library import format_listing, list_indexes

    rows = list_indexes(Layout.from_root(root))
    if as_json:
        for row in rows:
            typer.echo(json.dumps(row.to_dict()))
    else:
        for line in format_listing(rows):
            typer.echo(line)


def _index_library(root: Path | None, name: str, paths: list[Path], quiet: bool) -> int:
    from genreflow.similarity.library import check_name
    from genreflow.similarity.library_index import index_library, resolve_roots

    layout, params = _context(root)
    resolve_roots(layout, check_name(name), paths)  # a bad name or unknown library: no model load
    served = _champion(layout, params)
    run = index_library(
        layout, name, paths, served, params.tracking.registered_model, progress=not quiet
    )
    typer.echo(run.summary())
    return run.exit_code


def _champion(layout, params):
    """The champion as a ServedModel: its verified local copy when current, else via MLflow."""
    from genreflow.serving.predict import load_champion_model

    return load_champion_model(layout, params.tracking.registered_model)


def _index_corpus(root: Path | None, quiet: bool) -> None:
    layout, params = _pinned_context(root)  # the corpus index is evaluate's DVC output
    from genreflow.pipeline.champion import index_champion
    from genreflow.similarity.build import describe_index
    from genreflow.tracking.store import configure_mlflow

    configure_mlflow(layout, params.tracking.experiment)
    update = index_champion(params, layout, require_champion=True, progress=not quiet)
    typer.echo(describe_index(update.meta, layout.similarity_index))
    typer.echo(update.dvc)


@app.command()
def ui(
    port: Annotated[int, typer.Option(help="Port for the MLflow UI.")] = 5000,
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    root: RootOption = None,
) -> None:
    """Open the MLflow UI on this repository's tracking store (mlflow.db).

    Serves it through the project's MLflow app (``tracking/ui_app.py``), so a browser opens
    in the "Model training" view (MLflow 3.17 defaults to GenAI, where training runs are easy
    to miss), and prints the direct link to the project experiment's runs table.
    """
    from genreflow.core.config import load_params
    from genreflow.core.errors import GenreflowError
    from genreflow.core.paths import Layout
    from genreflow.tracking.store import resolve_tracking_uri
    from genreflow.tracking.ui_links import ui_banner, ui_command

    layout = Layout.from_root(root)
    uri = resolve_tracking_uri(layout.root)
    try:
        experiment: str | None = load_params(layout.params).tracking.experiment
    except GenreflowError:  # the UI still opens; the banner says why there is no link
        experiment = None
    cmd = ui_command(uri, host, port)
    for line in ui_banner(host, port, uri, experiment):
        typer.echo(line)
    raise SystemExit(subprocess.call(cmd, cwd=layout.root))


if __name__ == "__main__":  # pragma: no cover
    app()
