"""Wall and CPU time of the ``evaluate`` stage at two git revisions, and whether they write the
same reports.

The stage runs for real (``python stages/evaluate.py``, pinned numerics) in two private clones
of a repository (``--source``, default: this one), one per revision, each with a copy of the
source's ``data/``, ``models/``, ``mlflow.db`` and ``mlruns/`` (the copied store's absolute
artifact paths are rewritten to the clone, so nothing is written back into ``--source``).
Before every run the clone's ``mlflow.db`` and ``reports/`` are reset, so each run starts from
the same registry state. Runs alternate old, new, old, new... (``--rounds``), so load from other
processes on the machine hits both alike; report the ratio, not the seconds.

Prints one JSON object: per-run wall and CPU seconds and the seconds the robustness progress
bars ran, the median ratio new/old of each, and
``identical``: whether ``reports/metrics.json``, ``reports/promotion.json`` and the confusion
CSVs are byte-identical between the revisions in every round.

    .venv/bin/python bench/bench_evaluate.py --old 4ceedb4 --new HEAD --rounds 2
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import sqlite3
import statistics
import subprocess
import sys
import time
from pathlib import Path

COPIED = ("data", "models", "mlflow.db", "mlruns")
COMPARED = (
    "reports/metrics.json",
    "reports/promotion.json",
    "reports/evaluate/confusion_cnn.csv",
    "reports/evaluate/confusion_crnn.csv",
)
# MLflow keeps absolute artifact locations; in a copy they must name the copy's mlruns/.
PATH_COLUMNS = (
    ("runs", "artifact_uri"),
    ("datasets", "dataset_source"),
    ("logged_models", "artifact_location"),
    ("experiments", "artifact_location"),
    ("model_versions", "storage_location"),
    ("model_versions", "source"),
)


def _git(repo: Path, *args: str) -> str:
    done = subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, text=True)
    return done.stdout.strip()


def _rebase_store(db: Path, old_root: Path, new_root: Path) -> None:
    """Point the copied store's absolute artifact paths at ``new_root``."""
    old, new = f"{old_root.resolve()}/", f"{new_root.resolve()}/"
    with sqlite3.connect(db) as con:
        for table, column in PATH_COLUMNS:
            try:
                con.execute(
                    f"UPDATE {table} SET {column} = replace({column}, ?, ?)"  # noqa: S608
                    f" WHERE {column} LIKE ?",
                    (old, new, f"%{old}%"),
                )
            except sqlite3.OperationalError:  # a table or column this MLflow lacks
                continue


def prepare(source: Path, rev: str, dest: Path) -> Path:
    """A clone of ``source`` at ``rev`` in ``dest`` with the data, models and store copied."""
    if dest.exists():
        shutil.rmtree(dest)
    subprocess.run(["git", "clone", "-q", str(source), str(dest)], check=True)
    _git(dest, "checkout", "-q", _git(source, "rev-parse", rev))
    for name in COPIED:
        src = source / name
        if src.is_dir():
            shutil.copytree(src, dest / name, symlinks=True, dirs_exist_ok=True)
        elif src.is_file():
            shutil.copy2(src, dest / name)
    _rebase_store(dest / "mlflow.db", source, dest)
    shutil.copy2(dest / "mlflow.db", dest / "mlflow.db.pristine")
    return dest


def run_stage(repo: Path, python: str) -> dict[str, float]:
    """One ``evaluate`` from the pristine store; wall and CPU (user + system) seconds."""
    shutil.copy2(repo / "mlflow.db.pristine", repo / "mlflow.db")
    _git(repo, "checkout", "-q", "--", "reports")
    env = {
        **os.environ,
        "PYTHONPATH": "src",
        "PATH": f"{Path(python).parent}:{os.environ['PATH']}",
    }
    env.pop("MLFLOW_TRACKING_URI", None)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(
        [python, "stages/evaluate.py"], cwd=repo, env=env, capture_output=True, text=True
    )
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"{repo}: evaluate failed:\n{done.stderr[-3000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {
        "wall_s": round(wall, 2),
        "cpu_s": round(cpu, 2),
        "robustness_s": bar_seconds(done.stderr),
    }


def bar_seconds(stderr: str, prefix: str = "robustness") -> float:
    """Seconds the stage's progress bars named ``prefix...`` ran (tqdm's elapsed, summed over
    the bars: one per candidate before issue 15, one for all after)."""
    last: dict[str, float] = {}
    for line in re.split(r"[\r\n]", stderr):
        m = re.match(rf"^({prefix}[^:]*): .*\[(?:(\d+):)?(\d+):(\d+)<", line)
        if m:
            hours, minutes, seconds = (int(g or 0) for g in m.groups()[1:])
            last[m.group(1)] = hours * 3600 + minutes * 60 + seconds
    return float(sum(last.values()))


def same_reports(a: Path, b: Path) -> dict[str, bool]:
    return {f: (a / f).read_bytes() == (b / f).read_bytes() for f in COMPARED}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", type=Path, default=Path(__file__).resolve().parents[1])
    parser.add_argument("--old", required=True, help="git revision of the reference")
    parser.add_argument("--new", default="HEAD", help="git revision measured against it")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/bench-evaluate"))
    parser.add_argument("--python", default=sys.executable)
    args = parser.parse_args()

    repos = {
        label: prepare(args.source, rev, args.workdir / label)
        for label, rev in (("old", args.old), ("new", args.new))
    }
    runs: dict[str, list[dict[str, float]]] = {"old": [], "new": []}
    identical: list[dict[str, bool]] = []
    for _ in range(args.rounds):
        for label in ("old", "new"):
            runs[label].append(run_stage(repos[label], args.python))
            print(f"{label}: {runs[label][-1]}", file=sys.stderr, flush=True)
        identical.append(same_reports(repos["old"], repos["new"]))

    def ratio(key: str) -> float:
        new = statistics.median(r[key] for r in runs["new"])
        return round(new / statistics.median(r[key] for r in runs["old"]), 3)

    print(
        json.dumps(
            {
                "old": args.old,
                "new": args.new,
                "runs": runs,
                "ratio_wall": ratio("wall_s"),
                "ratio_cpu": ratio("cpu_s"),
                "ratio_robustness": ratio("robustness_s"),
                "identical": all(all(r.values()) for r in identical),
                "compared": identical,
                "load_avg_after": os.getloadavg(),
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
