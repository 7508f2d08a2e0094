"""The ``fetch`` stage: put a GTZAN-shaped corpus and its manifest in ``data/raw``.

Four sources (``data.source``): ``synthetic`` (generated, no network, the default so the
pipeline runs anywhere), ``local`` (a GTZAN copy already on disk), ``url`` (downloaded
into ``data/downloads``, a cache outside every DVC output, then handled as ``local``) and
``fma`` (a subset of the Free Music Archive on disk, with its official split).
Whatever the source, the output is ``data/raw/genres/<genre>/<file>`` plus
``data/raw/manifest.csv`` (and, for ``fma``, ``data/raw/excluded.csv``), built in a
temporary directory and swapped in only when complete.
"""

from __future__ import annotations

import logging
from pathlib import Path

from genreflow.core.atomic import atomic_dir
from genreflow.core.config import ConfigError, DataParams
from genreflow.core.paths import Layout
from genreflow.sources.download import download, download_name
from genreflow.sources.local import SourceError, resolve_source_path, stage_local
from genreflow.sources.manifest import (
    ManifestRow,
    scan_raw_dir,
    with_source_split,
    write_manifest,
)

log = logging.getLogger(__name__)


def _check_outside_output(source: Path, layout: Layout, key: str = "data.local.path") -> None:
    """Refuse a source inside data/raw: swapping the new raw dir in would delete it."""
    if source.resolve().is_relative_to(layout.raw_dir.resolve()):
        raise SourceError(
            f"{source}: {key} lies inside {layout.raw_dir}, which fetch replaces; "
            "point it at a copy outside the pipeline's outputs"
        )


def _fetch_fma(params: DataParams, layout: Layout, tmp: Path, progress: bool) -> list[ManifestRow]:
    """The fma source into ``tmp``: audio, manifest rows with the official split, and
    ``excluded.csv`` (every track or file left out, with its reason)."""
    # pandas and the FMA modules: load only when used
    from genreflow.sources import fma

    source = fma.resolve_fma_path(params.fma.path, layout.root)
    _check_outside_output(source, layout, "data.fma.path")
    result = fma.stage_fma(source, params.fma.subset, params.genres, tmp, progress=progress)
    report = tmp / fma.EXCLUSIONS_NAME
    fma.write_exclusions(report, result.exclusions)
    fma.log_exclusions(result.exclusions, str(layout.raw_dir / fma.EXCLUSIONS_NAME))
    rows = scan_raw_dir(tmp, layout.raw_dir.relative_to(layout.root).as_posix(), progress)
    return with_source_split(rows, result.splits)


def fetch(params: DataParams, layout: Layout, progress: bool = True, workers: int = 1) -> Path:
    """Build ``layout.raw_dir`` from ``params.source`` and return ``layout.raw_manifest``.

    On any error the previous ``data/raw`` (if any) is left as it was and no partial one is
    created. The user's local copy and the download cache are never modified, except that
    the cache gains (or resumes) the downloaded archive.
    """
    archive: Path | None = None
    if params.source == "url":
        u = params.url
        archive = download(
            u.url,
            layout.downloads_dir / download_name(u.url),
            u.sha256,
            retries=u.retries,
            timeout_s=u.timeout_s,
            progress=progress,
        )
    elif params.source == "local":
        archive = resolve_source_path(params.local.path, layout.root)
        _check_outside_output(archive, layout)
    elif params.source not in ("synthetic", "fma"):
        raise ConfigError(f"data.source: unknown source {params.source!r}")

    rel_prefix = layout.raw_dir.relative_to(layout.root).as_posix()
    with atomic_dir(layout.raw_dir) as tmp:
        if params.source == "fma":
            rows = _fetch_fma(params, layout, tmp, progress)
        else:
            if archive is None:
                # heavy deps (numpy, scipy, the whole synthesiser): load only when used
                from genreflow.sources.synthetic.corpus import generate_corpus

                generate_corpus(
                    params.synthetic, params.genres, tmp, progress=progress, workers=workers
                )
            else:
                stage_local(
                    archive,
                    tmp,
                    params.genres,
                    max_extract_bytes=params.url.max_extract_bytes,
                    scratch_dir=layout.downloads_dir,
                    progress=progress,
                )
            rows = scan_raw_dir(tmp, rel_prefix, progress=progress)
        if not rows:
            raise SourceError(f"{params.source} source produced no audio files")
        write_manifest(tmp / layout.raw_manifest.name, rows)
    genres = sorted({r["genre"] for r in rows})
    log.info("fetch: %d files in %d genre folders -> %s", len(rows), len(genres), layout.raw_dir)
    return layout.raw_manifest
