"""The retrain workflow (.github/workflows/retrain.yml): linted, audited and exercised.

- actionlint and zizmor (offline) must pass it clean, in a throwaway git repo (actionlint
  only looks for workflows inside one).
- Structural checks on the parsed YAML: triggers, paths, pins, permissions, concurrency,
  no expression interpolated into a shell script.
- The shell scripts of the key steps run here under bash with stand-ins for `genreflow`,
  `gh` and the GitHub remote: exit codes 0/3 pass and others fail, overrides are passed as
  literal arguments, the PR carries only dvc.lock/params.yaml/reports.
- Each kind of check is shown to fail on a deliberately broken copy of the workflow.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
WORKFLOW = REPO / ".github" / "workflows" / "retrain.yml"
BIN = Path(sys.executable).parent
ACTIONLINT = BIN / "actionlint"
ZIZMOR = BIN / "zizmor"

PIPELINE_PATHS = ["params.yaml", "dvc.yaml", "stages/**", "src/**", "**/*.dvc"]
SHA_RE = re.compile(r"^[^@\s]+@[0-9a-f]{40}$")
EXPR_RE = re.compile(r"\$\{\{(.*?)\}\}", re.S)


# --------------------------------------------------------------------------- helpers


def load(text: str) -> dict:
    doc = yaml.safe_load(text)
    assert isinstance(doc, dict), "the workflow is not a YAML mapping"
    return doc


def triggers(doc: dict) -> dict:
    # YAML 1.1 reads the bare key `on` as boolean True.
    on = doc.get("on", doc.get(True))
    if isinstance(on, str):
        return {on: None}
    if isinstance(on, list):
        return {name: None for name in on}
    return on or {}


def jobs(doc: dict) -> dict:
    return doc.get("jobs") or {}


def steps(doc: dict):
    for job_name, job in jobs(doc).items():
        for step in job.get("steps") or []:
            yield job_name, step


def find_step(doc: dict, job: str, key: str) -> dict:
    for step in jobs(doc)[job]["steps"]:
        if key in (step.get("id"), step.get("name")):
            return step
    raise AssertionError(f"no step {key!r} in job {job!r}")


def gh_glob(pattern: str) -> re.Pattern:
    """GitHub's filter-pattern glob as a regex: `**` crosses '/', `*` does not."""
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(out + r"\Z")


def matches_any(patterns: list[str], path: str) -> bool:
    return any(gh_glob(p).match(path) for p in patterns if not p.startswith("!"))


def git(cwd: Path, *args: str, env: dict | None = None) -> str:
    return subprocess.run(
        ["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True
    ).stdout


@pytest.fixture
def git_env(tmp_path: Path) -> dict:
    """An environment with no user or system git config and a fixed identity."""
    home = tmp_path / "home"
    home.mkdir()
    env = dict(os.environ)
    env.update(
        HOME=str(home),
        GIT_CONFIG_NOSYSTEM="1",
        GIT_CONFIG_GLOBAL=str(home / ".gitconfig"),
        GIT_AUTHOR_NAME="t",
        GIT_AUTHOR_EMAIL="t@example.invalid",
        GIT_COMMITTER_NAME="t",
        GIT_COMMITTER_EMAIL="t@example.invalid",
    )
    return env


def lint_repo(root: Path, text: str, env: dict) -> Path:
    """A git repo holding `text` as .github/workflows/retrain.yml."""
    wf = root / ".github" / "workflows"
    wf.mkdir(parents=True)
    (wf / "retrain.yml").write_text(text)
    git(root, "init", "-q", env=env)
    return root


def run_actionlint(root: Path, env: dict) -> subprocess.CompletedProcess:
    assert ACTIONLINT.exists(), f"{ACTIONLINT} missing: install the dev extra (make install)"
    return subprocess.run(
        [str(ACTIONLINT), "-no-color"], cwd=root, env=env, capture_output=True, text=True
    )


def run_zizmor(root: Path, env: dict, persona: str) -> tuple[int, list, str]:
    assert ZIZMOR.exists(), f"{ZIZMOR} missing: install the dev extra (make install)"
    # --no-config and --no-ignores: no configuration file or inline comment may hide a finding.
    proc = subprocess.run(
        [
            str(ZIZMOR),
            "--offline",
            "--no-config",
            "--no-ignores",
            "--no-progress",
            "--persona",
            persona,
            "--format",
            "json",
            ".github/workflows/retrain.yml",
        ],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
    )
    try:
        findings = json.loads(proc.stdout)
    except json.JSONDecodeError:
        findings = None
    return proc.returncode, findings, proc.stderr


# ------------------------------------------------------------------- structural checks
# Each returns a list of problems; empty means the workflow passes it.


def check_triggers(doc: dict, text: str) -> list[str]:
    on, problems = triggers(doc), []
    push = on.get("push") or {}
    if "main" not in (push.get("branches") or []):
        problems.append("push is not limited to main")
    for event in ("push", "pull_request"):
        paths = (on.get(event) or {}).get("paths") or []
        missing = set(PIPELINE_PATHS) - set(paths)
        if missing:
            problems.append(f"{event}.paths lacks {sorted(missing)}")
    if not (on.get("schedule") or [{}])[0].get("cron"):
        problems.append("no weekly schedule")
    dispatch = on.get("workflow_dispatch") or {}
    inputs = dispatch.get("inputs") or {}
    if "workflow_dispatch" not in on or inputs.get("overrides", {}).get("type") != "string":
        problems.append("no workflow_dispatch string input 'overrides'")
    return problems


def check_push_paths(doc: dict, text: str) -> list[str]:
    """Pipeline inputs trigger; the retrain's own outputs (dvc.lock, reports/) never do."""
    paths = (triggers(doc).get("push") or {}).get("paths") or []
    problems = [
        f"push.paths matches {p!r}"
        for p in ("dvc.lock", "reports/metrics.json", "reports/evaluate/confusion_cnn.json")
        if matches_any(paths, p)
    ]
    problems += [
        f"push.paths misses {p!r}"
        for p in (
            "params.yaml",
            "dvc.yaml",
            "stages/train_cnn.py",
            "src/genreflow/cli.py",
            "data/raw.dvc",
            "data/extra/more.dvc",
        )
        if not matches_any(paths, p)
    ]
    return problems


def check_self_trigger_guard(doc: dict, text: str) -> list[str]:
    cond = " ".join(str(jobs(doc).get("retrain", {}).get("if", "")).split())
    problems = []
    if "!startsWith(github.event.head_commit.message, 'retrain:')" not in cond:
        problems.append("retrain job does not skip pushes whose message starts 'retrain:'")
    if "github.event_name != 'pull_request'" not in cond:
        problems.append("retrain job may run on pull_request")
    return problems


def check_pinned(doc: dict, text: str) -> list[str]:
    problems = [
        f"{job}: {step['uses']!r} is not pinned to a 40-hex commit"
        for job, step in steps(doc)
        if "uses" in step and not step["uses"].startswith("./") and not SHA_RE.match(step["uses"])
    ]
    for line in text.splitlines():
        m = re.match(r"\s*(?:-\s*)?uses:\s*(\S+)(.*)$", line)
        if m and not re.match(r"\s*#\s*v\d+\.\d+\.\d+\b", m.group(2)):
            problems.append(f"{m.group(1)!r} has no '# vX.Y.Z' comment")
    return problems


def check_permissions(doc: dict, text: str) -> list[str]:
    problems = []
    top = doc.get("permissions", "missing")
    if top not in ({}, {"contents": "read"}):
        problems.append(f"top-level permissions are {top!r}, not {{}} or contents: read")
    for name, job in jobs(doc).items():
        perms = job.get("permissions")
        if not isinstance(perms, dict):
            problems.append(f"job {name} has no explicit permissions mapping")
            continue
        writes = {k for k, v in perms.items() if v == "write"}
        allowed = {"contents", "pull-requests"} if name == "open-pr" else set()
        if writes - allowed:
            problems.append(f"job {name} writes {sorted(writes - allowed)}")
    open_pr = jobs(doc).get("open-pr", {}).get("permissions") or {}
    if open_pr != {"contents": "write", "pull-requests": "write"}:
        problems.append(f"open-pr permissions are {open_pr!r}")
    return problems


def check_concurrency(doc: dict, text: str) -> list[str]:
    conc = jobs(doc).get("retrain", {}).get("concurrency") or doc.get("concurrency")
    if not isinstance(conc, dict) or not conc.get("group"):
        return ["the retrain job has no concurrency group"]
    if conc.get("cancel-in-progress") is not False:
        return ["a running retrain may be cancelled"]
    if "${{" in str(conc["group"]):
        return ["the retrain group varies by run, so two retrains can overlap"]
    return []


def check_no_interpolation_in_run(doc: dict, text: str) -> list[str]:
    """No `${{ }}` inside any run: script; the dispatch input travels through env."""
    problems = [
        f"{job}: run script interpolates ${{{{{expr.strip()}}}}}"
        for job, step in steps(doc)
        for expr in EXPR_RE.findall(str(step.get("run", "")))
    ]
    env_refs = [
        v
        for _, step in steps(doc)
        for v in (step.get("env") or {}).values()
        if "inputs.overrides" in str(v)
    ]
    if not env_refs:
        problems.append("inputs.overrides is not passed through a step env")
    return problems


def check_checkout_credentials(doc: dict, text: str) -> list[str]:
    return [
        f"{job}: checkout persists credentials"
        for job, step in steps(doc)
        if str(step.get("uses", "")).startswith("actions/checkout@")
        and (step.get("with") or {}).get("persist-credentials") is not False
    ]


def check_pr_runs_tests_only(doc: dict, text: str) -> list[str]:
    problems = []
    test = jobs(doc).get("test") or {}
    if "github.event_name == 'pull_request'" not in str(test.get("if", "")):
        problems.append("the test job is not limited to pull_request")
    if not any(str(s.get("run", "")).strip() == "make test" for s in test.get("steps", [])):
        problems.append("the test job does not run `make test`")
    if "secrets." in yaml.safe_dump(test):
        problems.append("the test job sees secrets")
    open_pr = jobs(doc).get("open-pr") or {}
    if open_pr.get("needs") != "retrain":
        problems.append("open-pr does not depend on retrain (it could run on pull_request)")
    return problems


def check_setup_and_install(doc: dict, text: str) -> list[str]:
    problems = []
    for name in ("test", "retrain"):
        setup = [
            s
            for s in jobs(doc)[name]["steps"]
            if str(s.get("uses", "")).startswith("actions/setup-python@")
        ]
        w = (setup or [{}])[0].get("with") or {}
        if (str(w.get("python-version")), w.get("cache"), w.get("cache-dependency-path")) != (
            "3.11",
            "pip",
            "constraints.txt",
        ):
            problems.append(f"{name}: setup-python is not 3.11 with a pip cache on constraints.txt")
    if not any(s.get("run") == "make install" for s in jobs(doc)["retrain"]["steps"]):
        problems.append("retrain does not run `make install`")
    return problems


def check_reports(doc: dict, text: str) -> list[str]:
    problems = []
    retrain = jobs(doc)["retrain"]["steps"]
    summary = [s for s in retrain if "GITHUB_STEP_SUMMARY" in str(s.get("run", ""))]
    if not summary or summary[0].get("if") != "always()":
        problems.append("reports/retrain.md is not always appended to the job summary")
    uploads = [
        s
        for s in retrain
        if str(s.get("uses", "")).startswith("actions/upload-artifact@")
        and (s.get("with") or {}).get("path") == "reports/"
    ]
    if not uploads or uploads[0].get("if") != "always()":
        problems.append("reports/ is not always uploaded")
    return problems


CHECKS: dict[str, Callable[[dict, str], list[str]]] = {
    f.__name__.removeprefix("check_"): f
    for f in (
        check_triggers,
        check_push_paths,
        check_self_trigger_guard,
        check_pinned,
        check_permissions,
        check_concurrency,
        check_no_interpolation_in_run,
        check_checkout_credentials,
        check_pr_runs_tests_only,
        check_setup_and_install,
        check_reports,
    )
}


# ------------------------------------------------------------------ the real workflow


@pytest.fixture(scope="module")
def text() -> str:
    return WORKFLOW.read_text()


def test_actionlint_passes_clean(tmp_path, git_env, text):
    proc = run_actionlint(lint_repo(tmp_path / "r", text, git_env), git_env)
    assert (proc.returncode, proc.stdout + proc.stderr) == (0, "")


@pytest.mark.parametrize("persona", ["regular", "auditor"])
def test_zizmor_passes_clean(tmp_path, git_env, text, persona):
    rc, findings, stderr = run_zizmor(lint_repo(tmp_path / "r", text, git_env), git_env, persona)
    assert findings == [], [f.get("ident") for f in findings or []] or stderr
    assert rc == 0, stderr


@pytest.mark.parametrize("name", sorted(CHECKS))
def test_structure(text, name):
    assert CHECKS[name](load(text), text) == []


# -------------------------------------------------------- the step scripts, exercised


def bash(script: str, cwd: Path, env: dict) -> subprocess.CompletedProcess:
    """As a GitHub runner runs a `run:` with no `shell:` on Linux: `bash -e {0}`."""
    path = cwd.parent / f"step-{abs(hash(script))}.sh"
    path.write_text(script)
    return subprocess.run(
        ["bash", "--noprofile", "--norc", "-e", str(path)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
    )


def executable(path: Path, body: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(body)
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)


def outputs(path: Path) -> dict:
    if not path.exists():
        return {}
    return dict(line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)


@pytest.fixture
def retrain_env(tmp_path, git_env, text):
    """A checkout with a fake `.venv/bin/genreflow` that records its argv and exit code."""
    work = tmp_path / "work"
    work.mkdir()
    git(work, "init", "-q", env=git_env)
    (work / "params.yaml").write_text("seed: 42\n")
    git(work, "add", ".", env=git_env)
    git(work, "commit", "-qm", "init", env=git_env)
    executable(
        work / ".venv" / "bin" / "genreflow",
        '#!/bin/sh\nprintf "%s\\n" "$@" > "$FAKE_ARGS"\n'
        'printf "%s\\n" "${MLFLOW_TRACKING_URI-unset}" > "$FAKE_ENV"\nexit "$FAKE_RC"\n',
    )
    env = dict(git_env)
    env.update(
        GITHUB_OUTPUT=str(tmp_path / "out"),
        FAKE_ARGS=str(tmp_path / "args"),
        FAKE_ENV=str(tmp_path / "env"),
        FAKE_RC="0",
        GITHUB_EVENT_NAME="workflow_dispatch",
        RETRAIN_SET="",
        PUSH_BEFORE="",
    )
    # Unset secrets and variables arrive as empty strings.
    for key, value in find_step(load(text), "retrain", "retrain")["env"].items():
        if "secrets." in value or "vars." in value:
            env[key] = ""
    script = find_step(load(text), "retrain", "retrain")["run"]

    def run(**overrides: str):
        e = dict(env, **overrides)
        for f in ("out", "args", "env"):
            (tmp_path / f).unlink(missing_ok=True)
        proc = bash(script, work, e)
        args_file = tmp_path / "args"
        argv = args_file.read_text().splitlines() if args_file.exists() else None
        return proc, outputs(tmp_path / "out"), argv

    run.work = work
    run.tmp = tmp_path
    return run


@pytest.mark.parametrize(
    ("code", "job_rc", "decision"),
    [(0, 0, "promoted"), (3, 0, "not promoted"), (1, 1, None), (2, 2, None)],
)
def test_retrain_exit_codes(retrain_env, code, job_rc, decision):
    proc, out, argv = retrain_env(FAKE_RC=str(code))
    assert argv == ["retrain"], "genreflow retrain was not called without options"
    assert proc.returncode == job_rc, proc.stdout + proc.stderr
    assert out.get("decision") == decision


def test_retrain_unsets_empty_secrets(retrain_env):
    retrain_env()
    assert (retrain_env.tmp / "env").read_text().strip() == "unset"
    retrain_env(MLFLOW_TRACKING_URI="http://mlflow.example:5000")
    assert (retrain_env.tmp / "env").read_text().strip() == "http://mlflow.example:5000"


def test_retrain_passes_overrides_as_literal_arguments(retrain_env):
    (retrain_env.work / "seed=glob-bait").write_text("")
    proc, _, argv = retrain_env(RETRAIN_SET="-S train_cnn.lr=0.02  seed=*\tdata.genres=[a,b]")
    assert proc.returncode == 0, proc.stderr
    assert argv == ["retrain", "-S", "train_cnn.lr=0.02", "-S", "seed=*", "-S", "data.genres=[a,b]"]


@pytest.mark.parametrize("evil", ["seed=1 $(touch pwned)", "`touch pwned`", "; touch pwned"])
def test_retrain_rejects_malformed_overrides(retrain_env, evil):
    proc, _, argv = retrain_env(RETRAIN_SET=evil)
    assert proc.returncode == 1
    assert argv is None, "genreflow ran despite a malformed override"
    assert "is not key=value" in proc.stdout
    assert not (retrain_env.work / "pwned").exists()


def test_retrain_base_is_previous_tip_on_push(retrain_env):
    head = git(retrain_env.work, "rev-parse", "HEAD").strip()
    _, _, argv = retrain_env(GITHUB_EVENT_NAME="push", PUSH_BEFORE=head)
    assert argv == ["retrain", "--base", head]
    # A new branch (all zeros) or a commit that is gone falls back to the default base.
    _, _, argv = retrain_env(GITHUB_EVENT_NAME="push", PUSH_BEFORE="0" * 40)
    assert argv == ["retrain"]
    _, _, argv = retrain_env(GITHUB_EVENT_NAME="schedule", PUSH_BEFORE=head)
    assert argv == ["retrain"]


@pytest.mark.parametrize("written", [True, False])
def test_summary_step(tmp_path, text, written):
    work = tmp_path / "work"
    (work / "reports").mkdir(parents=True)
    if written:
        (work / "reports" / "retrain.md").write_text("# Retrain\nnot promoted\n")
    summary = tmp_path / "summary.md"
    script = find_step(load(text), "retrain", "report to the job summary")["run"]
    proc = bash(script, work, dict(os.environ, GITHUB_STEP_SUMMARY=str(summary)))
    assert proc.returncode == 0, proc.stderr
    expected = "not promoted" if written else "was not written"
    assert expected in summary.read_text()


def test_pull_request_carries_only_lock_params_and_reports(tmp_path, git_env, text):
    doc = load(text)
    env = dict(git_env, RUNNER_TEMP=str(tmp_path / "runner"))
    (tmp_path / "runner").mkdir()

    # A "GitHub" remote with main holding the tracked files.
    remote = tmp_path / "remote.git"
    git(tmp_path, "init", "-q", "--bare", "-b", "main", str(remote), env=env)
    seed = tmp_path / "seed"
    seed.mkdir()
    git(seed, "init", "-q", "-b", "main", env=env)
    for rel, body in {
        "dvc.lock": "lock: old\n",
        "params.yaml": "seed: 42\n",
        "README.md": "readme\n",
        "reports/metrics.json": '{"acc": 0.5}\n',
        ".github/workflows/x.yml": "on: push\n",
    }.items():
        (seed / rel).parent.mkdir(parents=True, exist_ok=True)
        (seed / rel).write_text(body)
    git(seed, "add", ".", env=env)
    git(seed, "commit", "-qm", "init", env=env)
    git(seed, "push", "-q", str(remote), "main", env=env)

    # The retrain job's checkout after `genreflow retrain`.
    trained = tmp_path / "trained"
    git(tmp_path, "clone", "-q", str(remote), str(trained), env=env)
    (trained / "dvc.lock").write_text("lock: new\n")
    (trained / "reports" / "metrics.json").write_text('{"acc": 0.7}\n')
    (trained / "reports" / "retrain.md").write_text("# Retrain report\n")
    (trained / "README.md").write_text("changed outside the allowed paths\n")
    prepare = find_step(doc, "retrain", "patch")["run"]
    proc = bash(prepare, trained, dict(env, GITHUB_OUTPUT=str(tmp_path / "out")))
    assert proc.returncode == 0, proc.stderr
    assert outputs(tmp_path / "out") == {"changed": "true"}
    patch = tmp_path / "runner" / "retrain-pr" / "retrain.patch"
    assert "README.md" not in patch.read_text()
    # Even a patch that reaches further is applied only to the allowed paths.
    with patch.open("a") as f:
        f.write(git(trained, "diff", "HEAD", "--", "README.md", env=env))

    # The open-pr job: a fresh checkout, fake gh, push to the local remote.
    checkout = tmp_path / "checkout"
    git(tmp_path, "clone", "-q", str(remote), str(checkout), env=env)
    gh_log = tmp_path / "gh.log"
    executable(
        tmp_path / "fakebin" / "gh",
        f'#!/bin/sh\nprintf "%s\\n" "$*" >> "{gh_log}"\n'
        'if [ "$1" = pr ]; then cp "$(echo "$@" | sed "s/.*--body-file //")" '
        f'"{tmp_path}/body.md"; fi\n',
    )
    open_pr = find_step(doc, "open-pr", "commit, push and open the pull request")
    pr_env = dict(
        env,
        PATH=f"{tmp_path / 'fakebin'}:{env['PATH']}",
        GH_TOKEN="t",
        DECISION="not promoted",
        GITHUB_RUN_ID="4242",
        GITHUB_SERVER_URL="https://github.com",
        GITHUB_REPOSITORY="o/genreflow",
        GITHUB_EVENT_NAME="schedule",
        GITHUB_REF_NAME="main",
    )
    proc = bash(open_pr["run"], checkout, pr_env)
    assert proc.returncode == 0, proc.stdout + proc.stderr

    branch = "retrain/4242"
    message = git(remote, "log", "-1", "--format=%s", branch, env=env)
    assert message.startswith("retrain:"), message
    changed = git(remote, "diff", "--name-only", "main", branch, env=env).split()
    assert sorted(changed) == ["dvc.lock", "reports/metrics.json"]
    calls = gh_log.read_text().splitlines()
    assert calls[0] == "auth setup-git"
    assert calls[1].startswith(
        f"pr create --repo o/genreflow --base main --head {branch} --title retrain: run 4242"
    )
    assert "# Retrain report" in (tmp_path / "body.md").read_text()


def test_no_pull_request_when_nothing_changed(tmp_path, git_env, text):
    work = tmp_path / "work"
    work.mkdir()
    git(work, "init", "-q", env=git_env)
    (work / "dvc.lock").write_text("lock\n")
    git(work, "add", ".", env=git_env)
    git(work, "commit", "-qm", "init", env=git_env)
    (tmp_path / "runner").mkdir()
    env = dict(git_env, RUNNER_TEMP=str(tmp_path / "runner"), GITHUB_OUTPUT=str(tmp_path / "o"))
    proc = bash(find_step(load(text), "retrain", "patch")["run"], work, env)
    assert proc.returncode == 0, proc.stderr
    assert outputs(tmp_path / "o") == {"changed": "false"}


# ------------------------------------------------------------- the checks can fail


CHECKOUT = "actions/checkout@11bd71901bbe5b1630ceea73d27597364c9af683 # v4.2.2"

MUTATIONS = {
    # name: (edit, detectors that must report it)
    "unpinned checkout": (
        lambda t: t.replace(CHECKOUT, "actions/checkout@v4", 1),
        {"zizmor:unpinned-uses", "pinned"},
    ),
    "input inlined in run": (
        lambda t: t.replace(
            'genreflow retrain "${args[@]}" || rc=$?',
            "genreflow retrain ${{ inputs.overrides }} || rc=$?",
        ),
        {"zizmor:template-injection", "no_interpolation_in_run"},
    ),
    "credentials persisted": (
        lambda t: t.replace("        with:\n          persist-credentials: false\n", "", 1),
        {"zizmor:artipacked", "checkout_credentials"},
    ),
    # zizmor accepts this one (every job sets its own permissions); ours insists.
    "no top-level permissions": (
        lambda t: t.replace("permissions: {}\n", "", 1),
        {"permissions"},
    ),
    "write-all for retrain": (
        lambda t: t.replace(
            "    permissions:\n      contents: read # the PR is opened by the open-pr job;"
            " this job only reads\n",
            "    permissions: write-all\n",
        ),
        {"zizmor:excessive-permissions", "permissions"},
    ),
    "bad job key": (
        lambda t: t.replace("timeout-minutes: 180", "timeout-minute: 180"),
        {"actionlint"},
    ),
    "bad expression": (
        lambda t: t.replace(
            "needs.retrain.outputs.changed == 'true'", "needs.retrian.outputs.changed == 'true'"
        ),
        {"actionlint"},
    ),
    "dvc.lock triggers": (
        lambda t: t.replace("      - dvc.yaml\n", "      - dvc.yaml\n      - dvc.lock\n", 1),
        {"push_paths"},
    ),
    "retrains overlap": (
        lambda t: t.replace(
            "group: genreflow-retrain\n", "group: genreflow-retrain-${{ github.run_id }}\n"
        ),
        {"concurrency"},
    ),
    "no self-trigger guard": (
        lambda t: t.replace("!startsWith(github.event.head_commit.message, 'retrain:') &&", ""),
        {"self_trigger_guard"},
    ),
    "tests on every event": (
        lambda t: t.replace("if: github.event_name == 'pull_request'\n", "if: always()\n"),
        {"pr_runs_tests_only"},
    ),
}


@pytest.mark.parametrize("name", sorted(MUTATIONS))
def test_broken_workflow_is_caught(tmp_path, git_env, text, name):
    edit, detectors = MUTATIONS[name]
    broken = edit(text)
    assert broken != text, "the mutation no longer applies: update it"
    root = lint_repo(tmp_path / "r", broken, git_env)
    for detector in sorted(detectors):
        if detector == "actionlint":
            proc = run_actionlint(root, git_env)
            assert proc.returncode != 0 and proc.stdout, f"actionlint missed {name!r}"
        elif detector.startswith("zizmor:"):
            rc, findings, stderr = run_zizmor(root, git_env, "regular")
            idents = {f["ident"] for f in findings or []}
            assert detector.split(":", 1)[1] in idents and rc != 0, (name, idents, stderr)
        else:
            assert CHECKS[detector](load(broken), broken), f"check {detector} missed {name!r}"


def test_tools_resolve_next_to_the_interpreter():
    # The tests above must lint with the project's pinned tools, not whatever is on PATH.
    assert ACTIONLINT.parent == ZIZMOR.parent == Path(sys.executable).parent
    assert shutil.which("bash"), "the step scripts are exercised with bash"
