"""Facts with one home in the source: the arch <-> training-section table (core.config), the
champion alias and URI (core.champion_uri), and what follows a champion move
(pipeline.champion). Each test reads the source as it is, so a second copy fails here."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from genreflow.core.config import (
    SECTION_ARCH,
    TRAIN_SECTIONS,
    ConfigError,
    Params,
    arch_of_section,
    section_of_arch,
)

SRC = Path(__file__).resolve().parents[2] / "src" / "genreflow"


def _strings(path: Path) -> list[str]:
    """Every string literal of ``path`` (f-string parts included), docstrings left out."""
    tree = ast.parse(path.read_text())
    docs = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    return [
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docs
    ]


def _sources() -> list[Path]:
    return sorted(SRC.rglob("*.py"))


def test_the_section_table_matches_params_and_round_trips():
    params = Params()
    assert tuple(SECTION_ARCH) == TRAIN_SECTIONS
    for section in TRAIN_SECTIONS:
        arch = getattr(params, section).arch
        assert arch_of_section(section) == arch == SECTION_ARCH[section]
        assert section_of_arch(arch) == section
    assert section_of_arch("lstm") == "train_lstm"  # the section's own word works too
    with pytest.raises(ConfigError, match="choose cnn or crnn"):
        section_of_arch("transformer")
    with pytest.raises(ConfigError, match="unknown training section"):
        arch_of_section("train_gru")


def test_no_module_but_config_spells_a_training_section():
    home = SRC / "core" / "config.py"
    offenders = [
        f"{p.relative_to(SRC)}: {s!r}"
        for p in _sources()
        if p != home
        for s in _strings(p)
        if s in TRAIN_SECTIONS
    ]
    assert offenders == []


def test_no_module_but_champion_uri_builds_the_champion_uri():
    home = SRC / "core" / "champion_uri.py"
    offenders = [
        f"{p.relative_to(SRC)}: {s!r}"
        for p in _sources()
        if p != home
        for s in _strings(p)
        if s.endswith("@champion")  # a URI built by hand: models:/{name}@champion
    ]
    assert offenders == []


def _imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
    return found


def test_only_pipeline_champion_rebuilds_and_records_after_a_move():
    """The registry moves aliases only; recording a rebuilt index in dvc.lock, and the
    manual moves' index refresh, happen in pipeline.champion alone."""
    for path in _sources():
        imports = _imports(path)
        rel = path.relative_to(SRC).as_posix()
        if rel.startswith("registry/"):
            assert not any(m.startswith("genreflow.similarity") for m in imports), rel
        if rel != "pipeline/champion.py":
            assert "genreflow.pipeline.dvc_lock" not in imports, rel
            assert "genreflow.registry.manual" not in imports or rel == "cli.py", rel


def _command_imports(name: str) -> set[str]:
    tree = ast.parse((SRC / "cli.py").read_text())
    (func,) = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == name]
    return {
        f"{n.module}.{a.name}"
        for n in ast.walk(func)
        if isinstance(n, ast.ImportFrom) and n.module
        for a in n.names
    }


@pytest.mark.parametrize(
    ("command", "function"),
    [("promote", "promote"), ("rollback", "rollback"), ("_index_corpus", "index_champion")],
)
def test_the_moving_commands_go_through_pipeline_champion(command, function):
    imports = _command_imports(command)
    assert f"genreflow.pipeline.champion.{function}" in imports
    assert not any(
        m.startswith(("genreflow.registry.manual", "genreflow.similarity.build.build"))
        for m in imports
    )
