"""``genreflow retrain``: stores, pipeline, report and exit code, on fakes and on real DVC.

The first half drives :func:`genreflow.retrain.retrain` with a fake command runner and fake
store checks, so the order of the steps (check, pull, reproduce, report, push), what is skipped
without a remote and the exit code of each decision are checked in milliseconds. The second
half runs the real command twice in a committed copy of the repository with the tiny profile
and a *local* GTZAN-layout source in ``data/local/gtzan``: the first retrain builds everything;
then, on a copy with a local DVC remote, clips are added to the source, ``dvc status`` must
list ``fetch`` as changed, and a second retrain (with ``--set``, so through ``dvc exp run -S``)
must pull, retrain, report the new clips per genre and push. Each retrain's exit code must be
what its ``reports/promotion.json`` decided (with these seeds the first is 3, the second 0).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Sequence
from io import StringIO
from pathlib import Path

import pytest
import yaml

from genreflow.core.errors import GenreflowError
from genreflow.retrain import RetrainOptions, Tools, retrain
from genreflow.retrain.commands import StepError, StepResult, telling_line
from genreflow.retrain.data_diff import diff_manifests
from genreflow.retrain.links import run_links, run_url, version_runs
from genreflow.retrain.outcome import Outcome
from genreflow.retrain.overrides import OverrideError, parse_overrides

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
SOURCE = "data/local/gtzan"  # the local source inside the copy (git-ignored by data/local)
CLIPS_PER_GENRE = 3
ADDED = {"blues": 3, "jazz": 3}  # genre -> index of the clip added for the second retrain
RETRAIN_TIMEOUT_S = 600


# --------------------------------------------------------------------------- fakes
def _row(path: str, genre: str, sha: str = "0") -> dict:
    return {"path": path, "genre": genre, "track_id": Path(path).stem, "bytes": 1, "sha256": sha}


def _decision(decision: str, selected: bool = True, arch: str = "crnn", version: str = "2"):
    return {
        "arch": arch,
        "version": version,
        "selected": selected,
        "decision": decision,
        "reason": f"because {decision}",
        "reference": "baseline",
        "reference_version": None,
        "n_clips": 10,
        "alpha": 0.05,
        "rule": "promote iff ...",
        "val_accuracy": 0.5,
        "test_accuracy": 0.6,
        "evidence": {
            "candidate_accuracy": 0.6,
            "reference_accuracy": 0.3,
            "difference": 0.3,
            "lower_bound": 0.1,
            "interval": [0.1, 0.5],
            "p_better": 0.97,
        },
    }


def _promotion(decision: str) -> dict:
    return {
        "registered_model": "genre-classifier",
        "champion_version": "2" if decision == "promoted" else None,
        "promotion_alpha": 0.05,
        "decisions": [_decision(decision), _decision("not-selected", False, "cnn", "1")],
    }


class FakeRunner:
    """Records every command; ``dvc repro`` / ``dvc exp run`` write ``promotion.json``."""

    def __init__(
        self, root: Path, decision: str | None = "rejected", remote: str = "", listed: str = ""
    ) -> None:
        self.root = root
        self.decision = decision  # None: the pipeline is up to date, evaluate does not run
        # a real .dvc/config: retrain reads the default remote with DVC's own config loader
        _write_dvc_config(root, remote, listed or (f"{remote}\t/somewhere\n" if remote else ""))
        self.calls: list[tuple[str, list[str]]] = []
        self.fail_step: str | None = None

    def commands(self) -> list[str]:
        return [" ".join([Path(args[0]).name, *args[1:]]) for _, args in self.calls]

    def __call__(
        self, step: str, args: Sequence[str], *, echo: bool = True, check: bool = True
    ) -> StepResult:
        args = list(args)
        self.calls.append((step, args))
        sub = args[1:]
        output, code = "", 0
        if args[0] == "git":
            output = "f" * 40
        elif sub[:1] == ["repro"] or sub[:2] == ["exp", "run"]:
            output = "Running stage 'fetch':\nRunning stage 'evaluate':\n"
            if self.fail_step == step:
                output, code = "genreflow validate: error: too many bad clips\nERROR: x\n", 1
            elif self.decision is not None:
                (self.root / "reports").mkdir(exist_ok=True)
                promotion = json.dumps(_promotion(self.decision))
                (self.root / "reports/promotion.json").write_text(promotion)
        elif sub[:2] in (["params", "diff"], ["metrics", "diff"]):
            output = "| Path | Param | HEAD | workspace |\n|---|---|---|---|\n| p | a.b | 1 | 2 |\n"
        if check and code:
            raise StepError(f"{step} failed (exit {code}): {telling_line(output)}")
        return StepResult(code, output)


def _write_dvc_config(root: Path, default: str, listed: str) -> None:
    """``.dvc/config`` with the remotes of ``listed`` (``name<TAB>url`` lines) and ``default``
    as ``core.remote`` (empty: none)."""
    lines = [f"[core]\n    remote = {default}\n"] if default else []
    for line in listed.splitlines():
        name, url = line.split("\t")
        lines.append(f"['remote \"{name}\"']\n    url = {url}\n")
    (root / ".dvc" / "config").write_text("".join(lines))


@pytest.fixture()
def fake_repo(tmp_path: Path) -> Path:
    """A directory with the repository's params.yaml, a raw manifest and an empty DVC config."""
    (tmp_path / ".dvc").mkdir()
    shutil.copyfile(REPO / "params.yaml", tmp_path / "params.yaml")
    raw = tmp_path / "data/raw"
    raw.mkdir(parents=True)
    lines = ["path,genre,track_id,bytes,sha256", "data/raw/genres/jazz/jazz.00001.wav,jazz,x,1,0"]
    (raw / "manifest.csv").write_text("\n".join(lines) + "\n")
    return tmp_path


def fake_tools(runner: FakeRunner, checked: list[str]) -> Tools:
    return Tools(
        run=runner,
        check_tracking_server=lambda uri: checked.append(f"server {uri}"),
        check_dvc_remote=lambda root: checked.append(f"remote {root}"),
        base_manifest=lambda root, rev, rel: [_row("data/raw/genres/rock/rock.00000.wav", "rock")],
        run_links=lambda uri, ids: {i: f"{uri}/#/experiments/1/runs/{i}" for i in ids},
        # the registry's source run of each version (promotion.json names no runs)
        version_runs=lambda uri, name, versions: {
            v: {"1": "run-cnn", "2": "run-crnn"}[v] for v in versions
        },
    )


def _retrain(root: Path, tools: Tools, **options) -> Outcome:
    return retrain(RetrainOptions(root=root, out=StringIO(), **options), tools)


# --------------------------------------------------------------------------- pure parts
def test_overrides_are_checked_against_params_yaml():
    params = REPO / "params.yaml"
    (o,) = parse_overrides(["train_cnn.lr=0.02"], params)
    assert o.as_arg() == "train_cnn.lr=0.02"
    with pytest.raises(OverrideError, match=r"train_cnn\.lrr is not a key.*train_cnn\.lr"):
        parse_overrides(["train_cnn.lrr=0.02"], params)
    with pytest.raises(OverrideError, match="expected KEY=VALUE"):
        parse_overrides(["train_cnn.lr"], params)


def test_manifest_diff_counts_added_removed_and_changed_clips_per_genre():
    base = [_row("g/blues/b0.wav", "blues"), _row("g/jazz/j0.wav", "jazz"), _row("g/x.wav", "pop")]
    now = [
        _row("g/blues/b0.wav", "blues", "edited"),
        _row("g/blues/b1.wav", "blues"),
        _row("g/jazz/j0.wav", "jazz"),
    ]
    by_genre = {c.genre: c for c in diff_manifests(base, now)}
    assert by_genre["blues"].added == ("b1.wav",) and by_genre["blues"].changed == ("b0.wav",)
    assert by_genre["pop"].removed == ("x.wav",) and (by_genre["pop"].after == 0)
    assert not by_genre["jazz"].touched


def test_run_links_point_at_the_ui_route_without_credentials():
    url = run_url("https://bot:s3cret@mlflow.example.org:8443/", "7", "abc")
    assert url == "https://mlflow.example.org:8443/#/experiments/7/runs/abc"
    assert run_links("sqlite:////tmp/mlflow.db", ["abc"]) == {"abc": None}


def test_version_runs_never_create_a_store(tmp_path):
    db = tmp_path / "mlflow.db"
    assert version_runs(f"sqlite:///{db}", "genre-classifier", ["1"]) == {}
    assert not db.exists()
    assert version_runs(f"sqlite:///{db}", None, ["1"]) == {}


@pytest.mark.parametrize(
    ("decision", "evaluated", "code"),
    [
        # literal codes, the CI contract (0 new champion, 3 none, 1 failed), not the constants
        ("promoted", True, 0),
        ("rejected", True, 3),
        ("blocked", True, 3),
        ("already-champion", True, 3),
        ("promoted", False, 3),  # an old decision: nothing new was promoted
    ],
)
def test_exit_code_follows_this_retrains_decision(decision, evaluated, code):
    assert Outcome(evaluated=evaluated, promotion=_promotion(decision)).exit_code == code


# --------------------------------------------------------------------------- steps, with fakes
def test_without_a_remote_nothing_is_pulled_pushed_or_checked(fake_repo, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    runner, checked = FakeRunner(fake_repo, "rejected"), []
    outcome = _retrain(fake_repo, fake_tools(runner, checked))
    assert outcome.exit_code == 3
    commands = runner.commands()
    assert not [c for c in commands if c.startswith(("dvc pull", "dvc push"))]
    assert "dvc repro" in commands and checked == []
    report = (fake_repo / "reports/retrain.md").read_text()
    assert "none configured (no `dvc pull`, no `dvc push`)" in report


def test_with_a_remote_and_a_server_the_steps_run_in_order(fake_repo, monkeypatch):
    uri = "http://127.0.0.1:5999"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    runner, checked = FakeRunner(fake_repo, "promoted", remote="store"), []
    outcome = _retrain(fake_repo, fake_tools(runner, checked), base="HEAD~1")
    assert outcome.exit_code == 0
    assert checked == [f"server {uri}", f"remote {fake_repo}"]
    steps = [c for c in runner.commands() if c.split()[1] in ("pull", "repro", "push", "params")]
    assert steps == [
        "dvc pull --allow-missing -r store",
        "dvc repro",
        "dvc params diff HEAD~1 --md",
        "dvc push -r store",
    ]
    report = (fake_repo / "reports/retrain.md").read_text()
    assert f"[run-crnn]({uri}/#/experiments/1/runs/run-crnn)" in report
    assert "`store` (pulled before the run, pushed after it)" in report


def test_overrides_run_dvc_exp_run_in_the_workspace(fake_repo, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    runner = FakeRunner(fake_repo)
    _retrain(fake_repo, fake_tools(runner, []), overrides=["train_cnn.lr=0.02", "seed=1"])
    assert "dvc exp run -S train_cnn.lr=0.02 -S seed=1" in runner.commands()


def test_an_up_to_date_pipeline_is_no_new_champion(fake_repo, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    (fake_repo / "reports").mkdir()
    (fake_repo / "reports/promotion.json").write_text(json.dumps(_promotion("promoted")))
    outcome = _retrain(fake_repo, fake_tools(FakeRunner(fake_repo, decision=None), []))
    assert not outcome.evaluated and outcome.exit_code == 3
    report = (fake_repo / "reports/retrain.md").read_text()
    assert "`evaluate` did not run in this retrain" in report


def test_a_failing_step_is_named_and_nothing_is_pushed(fake_repo, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    runner = FakeRunner(fake_repo, remote="store")
    runner.fail_step = "dvc repro"
    with pytest.raises(StepError, match="^dvc repro failed .*genreflow validate: error: too many"):
        _retrain(fake_repo, fake_tools(runner, []))
    assert not [c for c in runner.commands() if c.startswith("dvc push")]
    report = (fake_repo / "reports/retrain.md").read_text()
    assert "**Outcome:** failed: dvc repro failed" in report


def test_an_unreachable_store_stops_before_any_pull(fake_repo, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    runner = FakeRunner(fake_repo, remote="store")

    def down(root: Path) -> None:
        raise GenreflowError("DVC remote http://127.0.0.1:1/x is unreachable")

    tools = Tools(run=runner, check_dvc_remote=down)
    with pytest.raises(StepError, match="^check stores: DVC remote http://127.0.0.1:1/x"):
        _retrain(fake_repo, tools)
    assert not [c for c in runner.commands() if c.split()[1] in ("pull", "repro")]


def test_remotes_without_a_default_are_an_error_not_a_skipped_push(fake_repo, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    runner = FakeRunner(fake_repo, listed="a\t/x\nb\t/y\n")
    with pytest.raises(StepError, match="check stores: DVC remote.s. a, b configured but none"):
        _retrain(fake_repo, fake_tools(runner, []))
    assert not [c for c in runner.commands() if c.split()[1] in ("pull", "repro")]


# --------------------------------------------------------------------------- real DVC
def _source_params(params: dict, kit) -> dict:
    """The tiny profile reading a local GTZAN-layout folder, split by the stable track hash."""
    params = kit.tiny_params(params)
    params["data"].update(source="local", local={"path": SOURCE})
    params["validate"]["split"]["scheme"] = "stratified"
    return params


def _write_clips(root: Path, params: dict, clips: dict[str, Sequence[int]]) -> list[Path]:
    """Synthetic clips ``{genre: indices}`` as ``<root>/<SOURCE>/genres/<genre>/...wav``."""
    from genreflow.core.config import SyntheticParams
    from genreflow.sources.synthetic.corpus import clip_path, render_clip, write_wav

    synth = SyntheticParams(**params["data"]["synthetic"])
    written = []
    for genre, indices in clips.items():
        for i in indices:
            path = clip_path(root / SOURCE, genre, i)
            path.parent.mkdir(parents=True, exist_ok=True)
            write_wav(path, render_clip(genre, i, synth), synth.sample_rate)
            written.append(path)
    return written


def run_retrain(kit, root: Path, *args: str) -> subprocess.CompletedProcess:
    env = kit.dvc_env()
    env.pop("RETRAIN_BASE", None)
    return subprocess.run(
        [str(kit.venv_bin / "genreflow"), "retrain", *args],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=RETRAIN_TIMEOUT_S,
    )


def expected_code(root: Path) -> int:
    """The exit code ``reports/promotion.json`` calls for (after a retrain that evaluated)."""
    promotion = json.loads((root / "reports/promotion.json").read_text())
    chosen = next(d for d in promotion["decisions"] if d["selected"])
    return 0 if chosen["decision"] == "promoted" else 3


@pytest.fixture(scope="module")
def repo(tmp_path_factory, pipeline_kit) -> Path:
    """A committed copy with a local source of 3 clips per genre (not built yet)."""
    root = tmp_path_factory.mktemp("genreflow-retrain")
    pipeline_kit.copy_repo(root, lambda p: _source_params(p, pipeline_kit))
    params = yaml.safe_load((root / "params.yaml").read_text())
    _write_clips(root, params, {g: range(CLIPS_PER_GENRE) for g in params["data"]["genres"]})
    return root


@pytest.fixture(scope="module")
def first(repo: Path, pipeline_kit) -> subprocess.CompletedProcess:
    """The first retrain: builds every stage on an empty registry."""
    return run_retrain(pipeline_kit, repo)


def test_bad_options_fail_in_one_line_naming_the_step(repo, pipeline_kit):
    for args, says in (
        (["--base", "no-such-rev"], "check options: --base 'no-such-rev' is not a commit"),
        (["--set", "train_cnn.lrr=1"], "check options: --set 'train_cnn.lrr=1'"),
    ):
        proc = run_retrain(pipeline_kit, repo, *args)
        assert proc.returncode == 1, proc.stderr
        errors = [line for line in proc.stderr.splitlines() if "error" in line.lower()]
        assert len(errors) == 1 and "Traceback" not in proc.stderr, proc.stderr
        assert errors[0].startswith(f"genreflow retrain: error: {says}"), proc.stderr
        assert "Running stage" not in proc.stdout
        assert f"failed: {says}" in (repo / "reports/retrain.md").read_text()


def test_help_documents_the_exit_codes(pipeline_kit):
    proc = subprocess.run(
        [str(pipeline_kit.venv_bin / "genreflow"), "retrain", "--help"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**pipeline_kit.clean_env(), "COLUMNS": "200"},
    )
    assert proc.returncode == 0
    text = " ".join(proc.stdout.split())
    for says in ("0 = a new champion", "3 = trained", "1 = a step failed"):
        assert says in text


def test_first_retrain_builds_reports_and_exits_as_decided(repo, first):
    # with these seeds the first decision is known: no new champion (3), and promotion.json
    # says so too (expected_code only cross-checks the report against the code)
    assert first.returncode == 3 == expected_code(repo), first.stdout[-3000:] + first.stderr
    assert "no DVC remote configured: no dvc pull before the run" in first.stdout
    report = (repo / "reports/retrain.md").read_text()
    for heading in (
        "# Retraining report",
        "## Promotion decision",
        "## Data changes",
        "## Params changes against `HEAD`",
        "## Metrics changes against `HEAD`",
        "## Confusion matrices",
        "## MLflow runs",
    ):
        assert heading in report
    assert "`fetch`, `validate`, `spectrogramize`" in report
    promotion = json.loads((repo / "reports/promotion.json").read_text())
    chosen = next(d for d in promotion["decisions"] if d["selected"])
    assert f"| decision | **{chosen['decision']}** |" in report
    assert f"| test clips | {chosen['n_clips']} |" in report
    assert "![cnn confusion matrix](evaluate/confusion_cnn.png)" in report
    assert (repo / "reports/evaluate/confusion_cnn.png").is_file()
    # promotion.json names the version; its run comes from the repository's registry
    assert "run_id" not in chosen
    runs = version_runs(
        f"sqlite:///{repo / 'mlflow.db'}", promotion["registered_model"], [chosen["version"]]
    )
    assert runs[chosen["version"]] in report


def test_new_clips_mark_fetch_changed_and_are_retrained_and_reported(
    repo, first, tmp_path, pipeline_kit
):
    assert first.returncode == 3, first.stderr
    copy = tmp_path / "copy"
    shutil.copytree(repo, copy, symlinks=True)
    remote = tmp_path / "remote"  # a real DVC remote: this retrain pulls and pushes
    remote.mkdir()
    pipeline_kit.dvc(copy, "remote", "add", "-d", "local", str(remote))
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@localhost"]
    for args in (["add", "-A"], ["commit", "-qm", "first retrain"]):
        subprocess.run([*git, *args], cwd=copy, check=True, capture_output=True)
    assert json.loads(pipeline_kit.dvc(copy, "status", "--json").stdout or "{}") == {}

    params = yaml.safe_load((copy / "params.yaml").read_text())
    _write_clips(copy, params, {g: [i] for g, i in ADDED.items()})
    status = json.loads(pipeline_kit.dvc(copy, "status", "--json").stdout)
    assert "fetch" in status, status

    proc = run_retrain(pipeline_kit, copy, "--set", "evaluate.promotion_alpha=0.3")
    # with these seeds and alpha 0.3 the second decision is known: a new champion (0)
    assert proc.returncode == 0 == expected_code(copy), proc.stdout[-3000:] + proc.stderr
    order = [proc.stdout.index(f"dvc {cmd}") for cmd in ("pull", "exp run -S", "push")]
    assert order == sorted(order)
    assert any((remote / "files").rglob("*")), "dvc push sent nothing to the remote"
    promotion = json.loads((copy / "reports/promotion.json").read_text())
    chosen = next(d for d in promotion["decisions"] if d["selected"])
    assert promotion["champion_version"] == chosen["version"]  # exit 0: the alias moved
    report = (copy / "reports/retrain.md").read_text()
    assert "`dvc exp run -S evaluate.promotion_alpha=0.3`" in report
    assert "`local` (pulled before the run, pushed after it)" in report
    assert "Stages run:** `fetch`" in report
    assert "| blues | 3 | 4 | 1 | 0 | 0 |" in report
    for genre, i in ADDED.items():
        assert f"- **{genre}**: added: `{genre}.{i:05d}.wav`" in report
    assert "promotion_alpha" in report.split("## Params changes")[1]
    assert json.loads(pipeline_kit.dvc(copy, "status", "--json").stdout or "{}") == {}
