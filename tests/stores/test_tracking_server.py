"""The pipeline against a real ``mlflow server``: what a team sharing one tracking server sees.

The session's tiny build ran ``dvc repro`` with ``MLFLOW_TRACKING_URI`` pointing at the
server, so everything below is read back over HTTP: both training runs with their per-epoch
history, the registered versions, the ``champion`` alias, and the champion's model artifacts
(served by the server, not read from a local path) when ``genreflow predict`` loads them.
"""

from __future__ import annotations

import json
import subprocess

import pandas as pd
import pytest
import yaml

from genreflow.retrain.store_checks import check_tracking_server

pytestmark = pytest.mark.integration

MODEL = "genre-classifier"


@pytest.fixture(scope="module")
def client(tiny_build):
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=tiny_build.tracking_uri, registry_uri=tiny_build.tracking_uri)


def champion_version(client) -> str | None:
    from mlflow.exceptions import MlflowException

    try:
        return str(client.get_model_version_by_alias(MODEL, "champion").version)
    except MlflowException:
        return None


def genreflow(kit, tiny_build, *args: str) -> subprocess.CompletedProcess:
    """The ``genreflow`` CLI in the build, tracking to the server."""
    return kit.run(
        [str(kit.venv_bin / "genreflow"), *args],
        tiny_build.root,
        kit.child_env(MLFLOW_TRACKING_URI=tiny_build.tracking_uri),
        check=False,
        timeout=300,
    )


@pytest.fixture(scope="module")
def champion(kit, tiny_build, client) -> str:
    """The champion version. Three clips per genre rarely let the gate beat the baseline
    floor, so when evaluate promoted nothing, a person promotes its selected version by hand,
    through the server, as here."""
    current = champion_version(client)
    if current is not None:
        return current
    promotion = json.loads((tiny_build.root / "reports/promotion.json").read_text())
    selected = next(d for d in promotion["decisions"] if d["selected"])
    proc = genreflow(kit, tiny_build, "promote", str(selected["version"]))
    assert proc.returncode == 0, proc.stderr
    assert champion_version(client) == str(selected["version"])
    return str(selected["version"])


def test_health_check_accepts_the_live_server(mlflow_server):
    check_tracking_server(mlflow_server.url)
    check_tracking_server(mlflow_server.url + "/")


def test_server_holds_both_runs_with_metric_histories(tiny_build, client):
    experiment = client.get_experiment_by_name("genreflow")
    assert experiment is not None
    runs = client.search_runs([experiment.experiment_id])
    by_arch = {r.data.tags.get("arch"): r for r in runs}
    assert {"cnn", "crnn"} <= set(by_arch)
    for arch, section in (("cnn", "train_cnn"), ("crnn", "train_lstm")):
        run = by_arch[arch]
        assert run.info.status == "FINISHED"
        assert run.data.params["section"] == section and run.data.params["epochs"] == "2"
        assert run.data.tags.get("dvc_stage") == section
        history = client.get_metric_history(run.info.run_id, "val_clip_accuracy")
        assert sorted(m.step for m in history) == [1, 2]
        # the run the stage recorded is the one on the server
        run_id = (tiny_build.root / f"models/{arch}/mlflow_run_id").read_text().strip()
        assert run_id == run.info.run_id
    # nothing was tracked beside the repository instead of on the server
    assert not (tiny_build.root / "mlflow.db").exists()
    assert not (tiny_build.root / "mlruns").exists()


def test_server_holds_registered_versions(tiny_build, client):
    versions = client.search_model_versions(f"name='{MODEL}'")
    assert {v.tags.get("arch") for v in versions} == {"cnn", "crnn"}
    promotion = json.loads((tiny_build.root / "reports/promotion.json").read_text())
    assert {str(d["version"]) for d in promotion["decisions"]} == {v.version for v in versions}


def test_champion_alias_and_predict_through_the_server(kit, tiny_build, client, champion):
    assert client.get_registered_model(MODEL).aliases.get("champion") == champion
    manifest = pd.read_csv(tiny_build.root / "data/validated/manifest.csv")
    clip = manifest.loc[manifest["split"] == "test", "path"].iloc[0]
    clip_path = tiny_build.root / clip
    assert clip_path.is_file(), clip_path
    proc = genreflow(
        kit,
        tiny_build,
        "predict",
        "--json",
        "--model-uri",
        f"models:/{MODEL}@champion",
        str(clip_path),
    )
    assert proc.returncode == 0, proc.stderr
    genres = yaml.safe_load((tiny_build.root / "params.yaml").read_text())["data"]["genres"]
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 1, proc.stdout
    answer = json.loads(lines[0])
    assert answer["path"] == str(clip_path) and answer["genre"] in genres
