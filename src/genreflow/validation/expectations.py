"""The Great Expectations suites over the per-clip table, and their reports.

Each check pairs one GX expectation with the sentence a user reads in ``quarantine.csv``: GX
decides *which* rows fail (``unexpected_index_list`` keyed by path), the check says *why* in
words. GX is imported here only, so importing :mod:`genreflow.validation` stays cheap.

The results and Data Docs are DVC outputs, so they hold content only: GX's run time, load time
and random ids are replaced by a run named after the data validated (see :class:`GxSession`).
"""

from __future__ import annotations

import datetime
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import great_expectations as gx
import numpy as np
import pandas as pd
from great_expectations.core.expectation_validation_result import (
    ExpectationSuiteValidationResult,
)
from great_expectations.core.run_identifier import RunIdentifier
from great_expectations.data_context.types.base import (
    DataContextConfig,
    InMemoryStoreBackendDefaults,
    ProgressBarsConfig,
)

from genreflow.core.config import ValidateParams

CLIP_SUITE = "genreflow_clips"
BALANCE_SUITE = "genreflow_class_balance"
DUPLICATE_CHECK = "duplicate"
TRACK_ID_CHECK = "unique_track_id"
BALANCE_CHECK = "class_balance"

#: The run time GX is given. It needs one, and the real one would make every report's bytes
#: (and the Data Docs folder names) differ run to run; the run *name* says what was validated.
FIXED_RUN_TIME = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)
_VIEWS = "genreflow.validation.docs_view"


@dataclass(frozen=True)
class Check:
    """One expectation on the clip table and the quarantine reason for a row that fails it."""

    name: str
    expectation: Any  # a gx.expectations.Expectation
    reason: Callable[[pd.Series], str]


def _fmt_db(value: float) -> str:
    return "-inf" if value == -math.inf else f"{value:.1f}"


def _duration_reason(v: ValidateParams) -> Callable[[pd.Series], str]:
    def reason(row: pd.Series) -> str:
        d = float(row["duration_s"])
        if d < v.min_duration_s:
            return f"too short: {d:.2f} s < min_duration_s {v.min_duration_s:g} s"
        return f"too long: {d:.2f} s > max_duration_s {v.max_duration_s:g} s"

    return reason


def _nonfinite_reason(row: pd.Series) -> str:
    nan = int(row["nan_samples"])
    inf = int(row["nonfinite_samples"]) - nan
    return f"non-finite samples: {nan} NaN, {inf} ±inf (float audio with NaN/inf values)"


def _check(
    name: str, expectation: type, reason: Callable[[pd.Series], str], **kwargs: Any
) -> Check:
    # meta["check"] ties each GX result back to its check, whatever order GX reports them in.
    return Check(name, expectation(meta={"check": name}, **kwargs), reason)


def clip_checks(v: ValidateParams, genres: Sequence[str]) -> list[Check]:
    """The clip-level checks, in the order their reasons are listed for a file."""
    E = gx.expectations
    rates = sorted(int(r) for r in v.sample_rates)
    return [
        _check(
            "decodable",
            E.ExpectColumnValuesToBeNull,
            lambda row: str(row["decode_error"]),
            column="decode_error",
            notes="Every file must decode (soundfile/libsndfile).",
        ),
        _check(
            "not_truncated",
            E.ExpectColumnValuesToBeNull,
            lambda row: str(row["truncation"]),
            column="truncation",
            notes="The header's declared audio size must fit in the file "
            "(libsndfile silently reads a truncated file short).",
        ),
        _check(
            "checksum",
            E.ExpectColumnValuesToBeNull,
            lambda row: str(row["checksum_error"]),
            column="checksum_error",
            notes="File bytes must still match the sha256 the fetch stage recorded.",
        ),
        _check(
            "duration",
            E.ExpectColumnValuesToBeBetween,
            _duration_reason(v),
            column="duration_s",
            min_value=v.min_duration_s,
            max_value=v.max_duration_s,
        ),
        _check(
            "sample_rate",
            E.ExpectColumnValuesToBeInSet,
            lambda row: (
                f"unsupported sample rate {int(row['sample_rate'])} Hz "
                f"(not in validate.sample_rates {rates})"
            ),
            column="sample_rate",
            value_set=rates,
        ),
        _check(
            "channels",
            E.ExpectColumnValuesToBeBetween,
            lambda row: (
                f"too many channels: {int(row['channels'])} > max_channels {v.max_channels}"
            ),
            column="channels",
            min_value=1,
            max_value=v.max_channels,
        ),
        _check(
            "finite",
            E.ExpectColumnValuesToBeBetween,
            _nonfinite_reason,
            column="nonfinite_samples",
            min_value=0,
            max_value=0,
            notes="No NaN or +-inf samples (float audio can hold them; they decode without "
            "error but make every feature non-finite).",
        ),
        _check(
            "not_silent",
            E.ExpectColumnValuesToBeBetween,
            lambda row: f"silent: RMS {_fmt_db(float(row['rms_dbfs']))} dBFS < {v.min_rms_dbfs:g}",
            column="rms_dbfs",
            min_value=v.min_rms_dbfs,
        ),
        _check(
            "not_clipped",
            E.ExpectColumnValuesToBeBetween,
            lambda row: (
                f"clipped: {100 * float(row['clipping_ratio']):.1f}% of samples at full "
                f"scale > {100 * v.max_clipping_ratio:g}%"
            ),
            column="clipping_ratio",
            max_value=v.max_clipping_ratio,
        ),
        _check(
            "known_genre",
            E.ExpectColumnValuesToBeInSet,
            lambda row: f"unknown genre {row['genre']!r} (not in data.genres)",
            column="genre",
            value_set=list(genres),
        ),
        _check(
            DUPLICATE_CHECK,
            E.ExpectColumnValuesToBeUnique,
            # Which copy is kept is decided by the caller, which knows the other verdicts.
            lambda row: "duplicate audio content",
            column="audio_sha256",
            notes="No audio content twice (sha256 of the decoded mono float32 samples); "
            "the first copy is kept, the others are quarantined.",
        ),
        _check(
            TRACK_ID_CHECK,
            E.ExpectColumnValuesToBeUnique,
            # Which file keeps the id is decided by the caller, which knows the other verdicts.
            lambda row: f"track id {row['track_id']!r} repeats",
            column="track_id",
            notes="No track id twice: ids (file names without the extension) key the split, "
            "the segments and the per-track scores. The first file keeps it.",
        ),
    ]


def _result_format(index_column: str) -> dict[str, Any]:
    return {"result_format": "COMPLETE", "unexpected_index_column_names": [index_column]}


def content_run_id(run_name: str) -> RunIdentifier:
    """The GX run identifier: ``run_name`` (what was validated) at :data:`FIXED_RUN_TIME`."""
    return RunIdentifier(run_name=run_name, run_time=FIXED_RUN_TIME)


def make_content_only(result: ExpectationSuiteValidationResult) -> None:
    """Drop what GX makes up per run from ``result`` (in place): its random ids and load time.

    The expectations' and the validation definition's ids are ``uuid4`` drawn when the suite is
    built, and ``ge_load_time`` is the wall clock when the DataFrame was read; none says
    anything about the data. The run id is content-only already (see :func:`content_run_id`),
    but GX serialises a :class:`RunIdentifier`'s time in the machine's local time zone, so it is
    kept as plain JSON in UTC.
    """
    run_id = result.meta.get("run_id")
    if isinstance(run_id, RunIdentifier):
        result.meta["run_id"] = {
            "run_name": run_id.run_name,
            "run_time": run_id.run_time.astimezone(datetime.UTC).isoformat(),
        }
    result.meta["validation_id"] = None
    markers = result.meta.get("batch_markers")
    if markers:
        markers.pop("ge_load_time", None)
    for res in result.results:
        if res.expectation_config is not None:
            res.expectation_config.id = None


def _site_config(directory: Path) -> dict[str, Any]:
    """A static site in ``directory`` whose pages render without timestamps or random ids."""
    page_view = {"module_name": _VIEWS, "class_name": "ContentOnlyPageView"}
    return {
        "class_name": "SiteBuilder",
        "site_index_builder": {
            "class_name": "DefaultSiteIndexBuilder",
            "view": {"module_name": _VIEWS, "class_name": "ContentOnlyIndexPageView"},
        },
        "site_section_builders": {
            "expectations": {"view": page_view},
            "validations": {"view": page_view},
        },
        "store_backend": {
            "class_name": "TupleFilesystemStoreBackend",
            "base_directory": str(directory),
        },
    }


class GxSession:
    """An ephemeral GX context: suites run in memory, reports are written where we say.

    ``run_name`` names every validation run of the session (GX shows it in the Data Docs and
    uses it in their folder names); the caller derives it from the data validated, so the same
    data give the same reports byte for byte.
    """

    def __init__(self, run_name: str) -> None:
        self.run_id = content_run_id(run_name)
        config = DataContextConfig(
            store_backend_defaults=InMemoryStoreBackendDefaults(init_temp_docs_sites=False),
            progress_bars=ProgressBarsConfig(globally=False, metric_calculations=False),
            analytics_enabled=False,
        )
        self.context = gx.get_context(mode="ephemeral", project_config=config)
        self._source = self.context.data_sources.add_pandas("genreflow")

    def run(
        self, suite_name: str, df: pd.DataFrame, expectations: Sequence[Any], index_column: str
    ) -> ExpectationSuiteValidationResult:
        """Validate ``df`` against ``expectations``; failing rows are keyed by ``index_column``."""
        batch = self._source.add_dataframe_asset(suite_name).add_batch_definition_whole_dataframe(
            "whole_table"
        )
        suite = self.context.suites.add(gx.ExpectationSuite(name=suite_name))
        for expectation in expectations:
            suite.add_expectation(expectation)
        definition = self.context.validation_definitions.add(
            gx.ValidationDefinition(name=suite_name, data=batch, suite=suite)
        )
        result = definition.run(
            batch_parameters={"dataframe": df},
            result_format=_result_format(index_column),
            run_id=self.run_id,
        )
        for res in result.results:
            if res.exception_info.get("raised_exception"):
                raise RuntimeError(
                    f"Great Expectations could not evaluate {res.expectation_config.type} "
                    f"on {suite_name}: {res.exception_info.get('exception_message')}"
                )
        make_content_only(result)
        self._restore(suite_name, result)
        return result

    def _restore(self, suite_name: str, result: ExpectationSuiteValidationResult) -> None:
        """Store the content-only ``result`` over the one GX stored, so Data Docs render it."""
        store = self.context.validation_results_store
        keys = [
            key
            for key in store.list_keys()
            if key.expectation_suite_identifier.name == suite_name and key.run_id == self.run_id
        ]
        if len(keys) != 1:
            raise RuntimeError(
                f"Great Expectations stored {len(keys)} results for {suite_name} in run "
                f"{self.run_id.run_name}, expected 1"
            )
        store.set(keys[0], result)

    def build_data_docs(self, directory: Path) -> Path:
        """Render static Data Docs for every run so far into ``directory``; return index.html."""
        directory = Path(directory).resolve()  # GX insists on an absolute base_directory
        self.context.add_data_docs_site("genreflow_validation", _site_config(directory))
        self.context.build_data_docs(site_names=["genreflow_validation"])
        index = directory / "index.html"
        if not index.is_file():
            raise RuntimeError(f"Great Expectations did not write Data Docs to {index}")
        return index


def unexpected_keys(
    result: ExpectationSuiteValidationResult, check: str, index_column: str
) -> set[str]:
    """Values of ``index_column`` for rows failing the expectation tagged ``check``."""
    keys: set[str] = set()
    for res in result.results:
        if (res.expectation_config.meta or {}).get("check") != check or res.success:
            continue
        for item in res.result.get("unexpected_index_list") or []:
            keys.add(str(item[index_column]))
    return keys


def clip_failures(
    table: pd.DataFrame, checks: Sequence[Check], result: ExpectationSuiteValidationResult
) -> dict[str, dict[str, str]]:
    """``{path: {check name: reason}}`` for every row a check flagged, from the GX result."""
    by_path = table.set_index("path", drop=False)
    failures: dict[str, dict[str, str]] = {}
    for check in checks:
        for path in sorted(unexpected_keys(result, check.name, "path")):
            failures.setdefault(path, {})[check.name] = check.reason(by_path.loc[path])
    return failures


def balance_table(accepted_genres: pd.Series, genres: Sequence[str]) -> pd.DataFrame:
    """Accepted clips per configured genre, zeros included (a genre with none is imbalance too)."""
    counts = accepted_genres.value_counts()
    return pd.DataFrame(
        {"genre": list(genres), "accepted": [int(counts.get(g, 0)) for g in genres]}
    )


def balance_expectation(counts: pd.DataFrame, tolerance: float) -> tuple[Any, float]:
    """Expect every genre to hold at least ``(1 - tolerance) * max`` accepted clips."""
    floor = (1.0 - tolerance) * float(counts["accepted"].max() if len(counts) else 0)
    expectation = gx.expectations.ExpectColumnValuesToBeBetween(
        meta={"check": BALANCE_CHECK},
        column="accepted",
        min_value=floor,
        notes=f"Class balance: min count >= (1 - {tolerance:g}) * max count = {floor:g}.",
    )
    return expectation, floor


def json_safe(obj: Any) -> Any:
    """Plain JSON: numpy scalars unwrapped, non-finite floats as strings ("-inf", "nan")."""
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [json_safe(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return str(obj)
    return obj
