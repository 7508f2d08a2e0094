"""Every stage's ``dvc.yaml`` deps cover the genreflow code its script runs.

DVC re-runs a stage only when a listed dependency changes; a module the stage imports but
does not list can be edited without ``dvc repro`` noticing. This test walks each stage
script's imports transitively (an AST walk, so imports inside functions count too) and
fails naming every module file that no dep of that stage covers.
"""

from __future__ import annotations

import ast
import shlex
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
SRC = REPO / "src"
PACKAGE = "genreflow"


def _stages() -> dict[str, dict]:
    return yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]


def _script(cmd: str) -> Path:
    scripts = [w for w in shlex.split(cmd) if w.endswith(".py")]
    assert len(scripts) == 1, f"expected one python script in {cmd!r}"
    return REPO / scripts[0]


def _module_file(dotted: str) -> Path | None:
    """The file of module ``dotted`` under src/, or None (not a module: a name in one)."""
    base = SRC.joinpath(*dotted.split("."))
    if (base / "__init__.py").is_file():
        return base / "__init__.py"
    if base.with_suffix(".py").is_file():
        return base.with_suffix(".py")
    return None


def _with_parents(dotted: str) -> list[str]:
    """Importing ``a.b.c`` runs ``a``, ``a.b`` and ``a.b.c``."""
    parts = dotted.split(".")
    return [".".join(parts[: i + 1]) for i in range(len(parts))]


def _imported_modules(path: Path) -> set[str]:
    """Dotted genreflow modules imported anywhere in ``path``."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        else:
            continue
        for name in names:
            if name.split(".")[0] == PACKAGE:
                found.update(m for m in _with_parents(name) if _module_file(m) is not None)
    return found


def code_files(script: Path) -> set[Path]:
    """Every genreflow source file that running ``script`` may execute."""
    seen: set[str] = set()
    todo = list(_imported_modules(script))
    while todo:
        module = todo.pop()
        if module in seen:
            continue
        seen.add(module)
        todo.extend(_imported_modules(_module_file(module)) - seen)
    return {_module_file(m) for m in seen}


def _covered(path: Path, deps: list[str]) -> bool:
    rel = path.relative_to(REPO).as_posix()
    return any(rel == d or rel.startswith(d.rstrip("/") + "/") for d in deps)


@pytest.mark.parametrize("stage", sorted(_stages()))
def test_stage_deps_cover_the_code_it_imports(stage):
    spec = _stages()[stage]
    deps = [d if isinstance(d, str) else next(iter(d)) for d in spec.get("deps", [])]
    script = _script(spec["cmd"])
    assert _covered(script, deps), f"{stage}: dvc.yaml deps do not list {script.name}"
    files = code_files(script)
    assert files, f"{stage}: found no genreflow import in {script}"
    missing = sorted(p.relative_to(REPO).as_posix() for p in files if not _covered(p, deps))
    assert not missing, f"dvc.yaml stage {stage!r} imports but does not depend on: {missing}"


def test_the_walk_follows_imports_inside_functions(tmp_path):
    """The walk must see lazy imports (the stages import heavy modules inside functions)."""
    script = tmp_path / "s.py"
    script.write_text("def main():\n    from genreflow.registry import promotion\n")
    files = {p.relative_to(SRC).as_posix() for p in code_files(script)}
    assert "genreflow/registry/promotion.py" in files
    assert "genreflow/registry/decision.py" in files  # imported by promotion.py
    assert "genreflow/evaluation/bootstrap.py" in files  # imported by decision.py


def test_fetch_depends_on_the_local_and_fma_source_content():
    """A clip added to the local source must mark fetch changed (not only a params edit), and
    the default path must exist: DVC rejects a dependency on an empty or missing path, and
    `dvc repro` on the synthetic default must still run."""
    deps = _stages()["fetch"]["deps"]
    data = yaml.safe_load((REPO / "params.yaml").read_text())["data"]
    for source in ("local", "fma"):
        assert f"${{data.{source}.path}}" in deps
        default = data[source]["path"]
        assert default and (REPO / default).is_dir()
