"""Where every artifact lives, relative to one repository root.

Stages, the CLI and tests all go through :class:`Layout` so a temporary copy of the
repository (as the integration tests use) never writes into the real one.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


def find_repo_root(start: Path | None = None) -> Path:
    """The repository root: the nearest directory (from ``start`` or the current one) holding
    ``dvc.yaml`` or ``params.yaml``; ``$DVC_ROOT`` only when there is none.

    The working directory comes first because DVC 3.67 sets ``DVC_ROOT`` to the *parent*
    repository even when ``dvc exp run --temp`` or a queued experiment runs the stages in a
    copy under ``.dvc/tmp/exps/``: trusting it would read the parent's params and write the
    parent's models.
    """
    here = (start or Path.cwd()).resolve()
    for candidate in (here, *here.parents):
        if (candidate / "dvc.yaml").is_file() or (candidate / "params.yaml").is_file():
            return candidate
    env_root = os.environ.get("DVC_ROOT")
    return Path(env_root).resolve() if env_root else here


@dataclass(frozen=True)
class Layout:
    """Paths of the pipeline's artifacts under ``root``."""

    root: Path

    @classmethod
    def from_root(cls, root: Path | str | None = None) -> Layout:
        return cls(Path(root).resolve() if root is not None else find_repo_root())

    @property
    def params(self) -> Path:
        return self.root / "params.yaml"

    # fetch
    @property
    def raw_dir(self) -> Path:
        return self.root / "data" / "raw"

    @property
    def raw_manifest(self) -> Path:
        return self.raw_dir / "manifest.csv"

    @property
    def downloads_dir(self) -> Path:
        """Download cache outside every DVC output, so a partial transfer survives a failed run."""
        return self.root / "data" / "downloads"

    # validate
    @property
    def validated_dir(self) -> Path:
        return self.root / "data" / "validated"

    @property
    def validated_manifest(self) -> Path:
        return self.validated_dir / "manifest.csv"

    @property
    def validation_reports(self) -> Path:
        return self.root / "reports" / "validation"

    # spectrogramize
    @property
    def features_dir(self) -> Path:
        return self.root / "data" / "features"

    @property
    def figures_dir(self) -> Path:
        return self.root / "reports" / "figures"

    # train / evaluate
    @property
    def models_dir(self) -> Path:
        return self.root / "models"

    @property
    def reports_dir(self) -> Path:
        return self.root / "reports"

    @property
    def mlflow_db(self) -> Path:
        return self.root / "mlflow.db"

    def relative(self, path: Path) -> str:
        """POSIX path relative to the root, as manifests store it."""
        return Path(path).resolve().relative_to(self.root).as_posix()

    def absolute(self, rel: str) -> Path:
        return self.root / rel
