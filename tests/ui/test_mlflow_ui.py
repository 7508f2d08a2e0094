"""The MLflow UI (3.17) shows what the README promises, checked in a real browser.

A tiny pipeline's store (two trained runs, two registered versions, a ``champion``: a copy of
the session's ``trained_tiny``) is served by the command ``genreflow ui`` runs (``mlflow ui``
with the project's app plugin) on a free loopback port and driven with playwright through
Debian's Chromium, a fresh browser profile per test. Why a browser: the UI is a JavaScript app
whose view (GenAI or "Model training") is chosen in the browser, so only a browser shows
whether the experiment opens on its runs table, whether the links ``genreflow ui`` prints, the
**Compare** button and the model page's alias still work after an MLflow upgrade.

Screenshots go to a temporary directory; with ``GENREFLOW_UPDATE_SCREENSHOTS=1`` they are also
copied to ``reports/ui/`` (the committed ones the README shows), so ordinary runs never rewrite
tracked files.

Skipped only when Chromium is missing outside CI and outside ``make test``; with ``CI`` set (as
GitHub Actions does) or ``GENREFLOW_REQUIRE_BROWSER=1`` (as ``make test``, and so ``.ci/run``,
sets) a missing browser fails, because ``make test`` installs it first.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

import pytest

from genreflow.core.paths import Layout

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOTS = REPO / "reports" / "ui"
UPDATE_ENV = "GENREFLOW_UPDATE_SCREENSHOTS"
REQUIRE_ENV = "GENREFLOW_REQUIRE_BROWSER"
MODEL = "genre-classifier"
EXPERIMENT = "genreflow"
SERVER_START_S = 90.0
UI_TIMEOUT_MS = 30_000
VIEWPORT = {"width": 1400, "height": 900}


@dataclass(frozen=True)
class Store:
    """The tiny pipeline's tracking store and what it holds."""

    layout: Layout
    uri: str
    experiment_id: str
    runs: dict[str, str]  # run name -> run id
    champion_version: str
    manifest_digest: str


@dataclass(frozen=True)
class Server:
    base: str
    log: Path


def _set(var: str) -> bool:
    return os.environ.get(var, "").strip().lower() not in ("", "0", "false", "no")


def _browser_required() -> bool:
    """In CI (``CI``, set by GitHub Actions) and ``make test`` (``GENREFLOW_REQUIRE_BROWSER``)
    a missing browser is a failure, not a skip."""
    return _set("CI") or _set(REQUIRE_ENV)


@pytest.fixture(scope="module")
def chromium() -> Path:
    found = CHROMIUM if CHROMIUM.is_file() else shutil.which("chromium")
    if found:
        return Path(found)
    if _browser_required():
        pytest.fail(f"{CHROMIUM} is missing; `make test` installs it (apt-get install chromium)")
    pytest.skip(f"{CHROMIUM} is missing (apt-get install -y chromium); outside CI, so skipped")


@pytest.fixture(scope="module")
def store(trained_tiny, tmp_path_factory: pytest.TempPathFactory) -> Store:
    """The session's trained tiny repository (two runs, two versions, a champion), copied so
    the server this module starts never opens the shared store."""
    from mlflow.tracking import MlflowClient

    from genreflow.core.hashing import file_sha256
    from genreflow.tracking.dataset_input import manifest_digest

    own = trained_tiny.copy(tmp_path_factory.mktemp("uirepo") / "repo")
    client = MlflowClient(tracking_uri=own.uri, registry_uri=own.uri)
    experiment = client.get_experiment_by_name(EXPERIMENT)
    assert experiment is not None
    champion = client.get_model_version_by_alias(MODEL, "champion")
    return Store(
        layout=own.layout,
        uri=own.uri,
        experiment_id=experiment.experiment_id,
        runs=dict(own.runs),
        champion_version=str(champion.version),
        manifest_digest=manifest_digest(file_sha256(own.layout.validated_manifest)),
    )


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _answers(url: str) -> bool:
    """Whether ``url`` answers 200, asked directly (a proxy from the environment would not
    reach a loopback server)."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=5) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def _stop(proc: subprocess.Popen) -> None:
    """Stop the server and the workers it started: its own process group (it leads it)."""
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=15)


@pytest.fixture(scope="module")
def server(store: Store, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The server ``genreflow ui`` runs (``mlflow ui`` with the project's app plugin) on the
    store, on a free loopback port, until the module's tests end."""
    from genreflow.tracking.ui_app import APP_NAME
    from genreflow.tracking.ui_links import app_installed, ui_command

    # without the entry point genreflow ui falls back to plain mlflow ui (GenAI first)
    assert app_installed(), "the mlflow.app entry point is not installed: run `make install`"
    port = _free_port()
    log = tmp_path_factory.mktemp("mlflow-ui") / "server.log"
    cmd = ui_command(store.uri, "127.0.0.1", port)
    assert cmd[-2:] == ["--app-name", APP_NAME]
    with log.open("wb") as out:
        proc = subprocess.Popen(
            cmd,
            cwd=store.layout.root,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own group, so teardown also stops its workers
        )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + SERVER_START_S
        while not _answers(f"{base}/health"):
            if proc.poll() is not None:
                pytest.fail(f"mlflow ui exited with {proc.returncode}:\n{log.read_text()}")
            if time.monotonic() > deadline:
                waited = f"{SERVER_START_S:.0f} s"
                pytest.fail(f"mlflow ui did not answer in {waited}:\n{log.read_text()}")
            time.sleep(0.5)
        yield Server(base=base, log=log)
    finally:
        _stop(proc)


@pytest.fixture(scope="module")
def browser(chromium: Path) -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(chromium), args=["--no-sandbox"])
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture()
def page(browser, server: Server):
    """A fresh browser context per test: no view mode or panel state carried over. The
    ``expect`` assertions wait as long as the actions (playwright's own default is 5 s, which a
    loaded two-core machine exceeds while the app still shows "Loading...")."""
    from playwright.sync_api import expect

    expect.set_options(timeout=UI_TIMEOUT_MS)
    context = browser.new_context(viewport=VIEWPORT)
    context.set_default_timeout(UI_TIMEOUT_MS)
    page = context.new_page()
    try:
        yield page
    finally:
        context.close()


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Where screenshots are written; copied to reports/ui/ at the end when asked to."""
    directory = tmp_path_factory.mktemp("screenshots")
    yield directory
    if os.environ.get(UPDATE_ENV) == "1":
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        for png in sorted(directory.glob("*.png")):
            shutil.copyfile(png, SCREENSHOTS / png.name)


ASSISTANT_WAIT_MS = 5_000
ASSISTANT_CLOSE = "mlflow.assistant.chat_panel.close"  # the panel's close button (3.17)


def _close_assistant(page) -> None:
    """Close the "MLflow Assistant" side panel, which opens by default (a moment after the
    page) and covers a third of the screenshots; a UI without it is fine too."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    close = page.locator(f'[data-component-id="{ASSISTANT_CLOSE}"]')
    try:
        close.wait_for(state="visible", timeout=ASSISTANT_WAIT_MS)
    except PlaywrightTimeout:
        return
    for _ in range(5):  # a click while the app is still hydrating can be lost: try again
        close.click()
        try:
            close.wait_for(state="hidden", timeout=ASSISTANT_WAIT_MS)
            return
        except PlaywrightTimeout:
            continue
    raise AssertionError("the MLflow Assistant panel did not close")


GENAI_ONLY_NAV = ("Overview", "Sessions", "Judges", "Evaluation runs")  # 3.17's GenAI sidebar


def _expect_model_training_runs_table(page, store: Store) -> None:
    """The "Model training" runs table with both runs, and none of the GenAI view's marks:
    heading "Runs" (GenAI calls its table "Training runs"), the table's column headers, each
    run by name, the sidebar's "Runs" and no GenAI-only sidebar entry."""
    from playwright.sync_api import expect

    expect(page.get_by_role("heading", name="Runs", exact=True)).to_be_visible()
    for column in ("Run Name", "Created", "Dataset"):
        expect(page.get_by_role("columnheader", name=column, exact=True).first).to_be_visible()
    for name in store.runs:
        expect(page.get_by_role("link", name=name, exact=True)).to_be_visible()
    nav = page.locator("nav")
    expect(nav.get_by_role("link", name="Runs", exact=True)).to_be_visible()
    expect(page.get_by_role("heading", name="Training runs", exact=True)).to_have_count(0)
    for entry in GENAI_ONLY_NAV:
        expect(nav.get_by_role("link", name=entry, exact=True)).to_have_count(0)


def _printed_runs_link(store: Store, server: Server) -> str:
    """The runs link ``genreflow ui`` prints for this store and server."""
    from genreflow.tracking.ui_links import ui_banner

    port = int(urlsplit(server.base).port or 0)
    banner = ui_banner("127.0.0.1", port, store.uri, EXPERIMENT)
    (link,) = [m for line in banner for m in re.findall(r"http://\S+/#/\S+", line)]
    return link


def test_printed_link_opens_the_runs_table_with_both_runs_and_their_dataset(
    page, store: Store, server: Server, shots: Path
) -> None:
    from playwright.sync_api import expect

    link = _printed_runs_link(store, server)
    assert link.startswith(f"{server.base}/#/experiments/{store.experiment_id}/runs")
    page.goto(link)
    _expect_model_training_runs_table(page, store)
    _close_assistant(page)
    # the Dataset column: the validated manifest, by name and digest, on each run's row
    dataset = page.get_by_test_id("open-dataset-drawer")
    expect(dataset).to_have_count(len(store.runs))
    expect(dataset.first).to_have_text(f"validated-manifest ({store.manifest_digest})")
    page.screenshot(path=str(shots / "runs.png"))


def test_plain_experiment_url_opens_the_model_training_runs_table(
    page, store: Store, server: Server, shots: Path
) -> None:
    """What a person gets by clicking the experiment in a browser that never chose a view:
    ``#/experiments/<id>``, no ``workflowType`` query (MLflow 3.17 alone opens GenAI here)."""
    page.goto(f"{server.base}/#/experiments/{store.experiment_id}")
    _expect_model_training_runs_table(page, store)
    assert "workflowType=genai" not in page.url
    _close_assistant(page)
    page.screenshot(path=str(shots / "experiment.png"))


def test_a_person_who_picks_genai_keeps_it(page, store: Store, server: Server) -> None:
    """The default is only a default: the toggle still works, and the browser keeps GenAI."""
    from playwright.sync_api import expect

    from genreflow.tracking.ui_app import WORKFLOW_STORAGE_KEY

    page.goto(f"{server.base}/#/experiments/{store.experiment_id}")
    expect(page.get_by_role("heading", name="Runs", exact=True)).to_be_visible()
    page.get_by_role("button", name="GenAI", exact=True).click()
    page.wait_for_url(re.compile(r".*workflowType=genai.*"))
    assert page.evaluate(f"localStorage.getItem({json.dumps(WORKFLOW_STORAGE_KEY)})") == '"genai"'

    page.goto(f"{server.base}/#/experiments/{store.experiment_id}")
    page.reload()  # the index page again, with its default script: it must not overrule
    nav = page.locator("nav")
    for entry in GENAI_ONLY_NAV:
        expect(nav.get_by_role("link", name=entry, exact=True)).to_be_visible()
    expect(nav.get_by_role("link", name="Runs", exact=True)).to_have_count(0)


def test_experiment_states_its_kind(store: Store) -> None:
    """The store side: the project experiment says it is a model-training one."""
    from mlflow.tracking import MlflowClient

    from genreflow.tracking.store import EXPERIMENT_KIND, EXPERIMENT_KIND_TAG

    experiment = MlflowClient(tracking_uri=store.uri).get_experiment(store.experiment_id)
    assert experiment.tags.get(EXPERIMENT_KIND_TAG) == EXPERIMENT_KIND


def test_compare_button_opens_the_comparison_of_both_runs(
    page, store: Store, server: Server, shots: Path
) -> None:
    from playwright.sync_api import expect

    from genreflow.tracking.ui_links import runs_url

    page.goto(runs_url(server.base, store.experiment_id))
    expect(page.get_by_role("heading", name="Runs", exact=True)).to_be_visible()
    _close_assistant(page)
    expect(page.get_by_role("link", name=next(iter(store.runs)), exact=True)).to_be_visible()
    page.get_by_role("checkbox", name="Select all runs").check()
    page.get_by_test_id("runs-compare-button").click()

    page.wait_for_url(re.compile(r".*#/compare-runs\?.*"))
    query = parse_qs(unquote(page.url.split("?", 1)[1]))
    assert set(json.loads(query["runs"][0])) == set(store.runs.values())
    assert json.loads(query["experiments"][0]) == [store.experiment_id]
    heading = page.get_by_role("heading", name="Comparing 2 Runs from 1 Experiment")
    expect(heading).to_be_visible()
    for run_id in store.runs.values():
        expect(page.get_by_text(run_id, exact=True).first).to_be_visible()
    _close_assistant(page)
    page.screenshot(path=str(shots / "compare.png"))


def test_model_page_shows_the_champion_alias(
    page, store: Store, server: Server, shots: Path
) -> None:
    from playwright.sync_api import expect

    from genreflow.tracking.ui_links import model_url

    # tall enough to show the heading and both versions' rows (each lists ~20 tags)
    page.set_viewport_size({"width": VIEWPORT["width"], "height": 1500})
    page.goto(model_url(server.base, MODEL))
    expect(page.get_by_role("heading", name=MODEL, exact=True)).to_be_visible()
    _close_assistant(page)
    tags_toggle = page.get_by_role("button", name="Tags", exact=True)
    if tags_toggle.count():  # fold the model's long decision_history tag away
        tags_toggle.first.click()
    row = page.get_by_role("row").filter(has_text=f"Version {store.champion_version}")
    alias = row.get_by_text(re.compile(r"^@\s*champion$"))
    expect(alias).to_be_visible()
    # only the champion's row carries the alias
    expect(page.get_by_text(re.compile(r"^@\s*champion$"))).to_have_count(1)
    alias.scroll_into_view_if_needed()
    page.screenshot(path=str(shots / "model.png"))
