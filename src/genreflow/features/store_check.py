"""Training's check that the feature store on disk is the one ``params.yaml`` describes."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

from genreflow.core.config import FeatureParams
from genreflow.core.errors import StaleInputError
from genreflow.features.store import FeatureStore


def check_store_matches(store: FeatureStore, params: FeatureParams, where: Path) -> FeatureParams:
    """The store's feature params, after checking ``params.yaml`` still describes them.

    A store made with other features than ``params.yaml`` says would train a model whose
    served front-end disagrees with the config.
    """
    stored = store.feature_params
    if stored != params:
        raise StaleInputError(
            f"{where / 'meta.json'}: the feature store was made with {asdict(stored)}, but "
            f"params.yaml features are {asdict(params)}; run `dvc repro spectrogramize`"
        )
    return stored
