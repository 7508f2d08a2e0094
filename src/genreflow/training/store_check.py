"""Training's check that the feature store on disk is the one ``params.yaml`` describes."""

from __future__ import annotations

from dataclasses import asdict, replace
from pathlib import Path

from genreflow.config import FeatureParams
from genreflow.features.store import FeatureStore


def check_store_matches(store: FeatureStore, params: FeatureParams, where: Path) -> FeatureParams:
    """The store's feature params, after checking ``params.yaml`` still describes them.

    A store made with other features than ``params.yaml`` says would train a model whose
    served front-end disagrees with the config; ``workers`` alone does not matter.
    """
    stored = store.feature_params
    if replace(stored, workers=0) != replace(params, workers=0):
        raise ValueError(
            f"{where / 'meta.json'}: the feature store was made with {asdict(stored)}, but "
            f"params.yaml features are {asdict(params)}; run `dvc repro spectrogramize`"
        )
    return stored
