"""``Layout`` and ``dvc.yaml`` name the same artifact paths.

The stages write every artifact where :class:`genreflow.core.paths.Layout` says; DVC caches,
plots and compares what ``dvc.yaml`` declares. If the two drift, DVC tracks a file nobody
writes and misses the one that is written. So each stage's declared outs, metrics and plots
must be exactly the paths Layout gives that stage (for the architecture ``params.yaml``
trains in each training section), and every artifact a stage depends on must be a path
Layout gives some stage.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from genreflow.core.paths import Layout

REPO = Path(__file__).resolve().parents[2]
LAYOUT = Layout(Path("/repo"))  # any root will do: paths are compared relative to it
TRAIN_SECTIONS = ("train_cnn", "train_lstm")
CODE_DIRS = ("src/", "stages/")
# fetch's inputs: the user's data (a GTZAN copy, an FMA copy), no stage's output
SOURCE_DEPS = ("${data.local.path}", "${data.fma.path}")


def _load(name: str) -> dict:
    return yaml.safe_load((REPO / name).read_text())


def _archs() -> dict[str, str]:
    """Architecture trained by each training section, as ``params.yaml`` sets it."""
    params = _load("params.yaml")
    return {section: params[section]["arch"] for section in TRAIN_SECTIONS}


def layout_outputs(layout: Layout, archs: dict[str, str]) -> dict[str, set[Path]]:
    """Every artifact each stage writes, as Layout names it."""
    confusion = {layout.confusion(a, ext) for a in archs.values() for ext in ("json", "csv", "png")}
    return {
        "fetch": {layout.raw_dir},
        "validate": {
            layout.validated_dir,
            layout.validation_quarantine,
            layout.validation_clips,
            layout.validation_gx_result,
            layout.validation_data_docs,
            layout.validation_summary,
        },
        "spectrogramize": {layout.features_dir, layout.figures_dir},
        **{
            section: {
                layout.model_file(arch),
                layout.run_info(arch),
                layout.checkpoint(arch),
                layout.run_id_file(arch),
                layout.training_curve(arch),
            }
            for section, arch in archs.items()
        },
        "evaluate": {
            layout.metrics,
            layout.promotion,
            layout.promotion_log,
            layout.similarity_index,
            *confusion,
        },
    }


def _rel(paths: set[Path]) -> list[str]:
    return sorted(p.relative_to(LAYOUT.root).as_posix() for p in paths)


def _names(entries: list) -> list[str]:
    """Paths of a dvc.yaml list whose items are ``path`` or ``{path: options}``."""
    return [e if isinstance(e, str) else next(iter(e)) for e in entries or []]


def _declared(spec: dict) -> list[str]:
    return sorted(n for key in ("outs", "metrics", "plots") for n in _names(spec.get(key)))


STAGES = _load("dvc.yaml")["stages"]
EXPECTED = layout_outputs(LAYOUT, _archs())


def test_every_stage_has_layout_paths():
    assert sorted(STAGES) == sorted(EXPECTED)


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_declared_outputs_are_layout_paths(stage):
    declared = _declared(STAGES[stage])
    assert len(declared) == len(set(declared)), f"{stage}: a path is declared twice"
    assert declared == _rel(EXPECTED[stage]), (
        f"dvc.yaml stage {stage!r} declares outs/metrics/plots that differ from Layout"
    )


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_artifact_deps_are_layout_paths(stage):
    """A dep outside the code is another stage's output, at the path Layout gives it."""
    written = {rel for paths in EXPECTED.values() for rel in _rel(paths)}
    deps = [d for d in _names(STAGES[stage].get("deps")) if d not in SOURCE_DEPS]
    artifacts = [d for d in deps if not d.startswith(CODE_DIRS)]
    assert sorted(set(artifacts) - written) == []


def test_top_level_plots_are_training_curves():
    curves = _rel({LAYOUT.training_curve(arch) for arch in _archs().values()})
    for plot in _load("dvc.yaml").get("plots", []):
        (spec,) = plot.values()
        y = spec.get("y", {})
        assert sorted(y) == curves, next(iter(plot))


def test_both_architectures_get_their_own_directory():
    archs = _archs()
    assert len(set(archs.values())) == len(archs)
    for arch in archs.values():
        paths = (LAYOUT.checkpoint, LAYOUT.run_id_file, LAYOUT.model_file, LAYOUT.run_info)
        assert {p(arch).parent for p in paths} == {LAYOUT.model_dir(arch)}
