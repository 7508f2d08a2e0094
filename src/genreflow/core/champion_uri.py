"""The ``champion`` alias and the model URI that loads it, in one place.

Serving, similar-song search, the registry and the CLI all name the champion; they take the
alias and the URI from here. This module imports nothing, so the CLI (and serving, which the
registry itself imports) can use it without pulling in MLflow or the registry package.
"""

from __future__ import annotations

CHAMPION_ALIAS = "champion"


def champion_uri(registered_model: str) -> str:
    """``models:/<registered_model>@champion``: what serving loads by default."""
    return f"models:/{registered_model}@{CHAMPION_ALIAS}"


def is_champion_uri(model_uri: str) -> bool:
    """Whether ``model_uri`` names some registered model's champion by its alias."""
    return model_uri.startswith("models:/") and model_uri.endswith(f"@{CHAMPION_ALIAS}")


def champion_of(model_uri: str) -> str | None:
    """The registered model whose champion ``model_uri`` names (``models:/NAME@champion``),
    else ``None``."""
    if not is_champion_uri(model_uri):
        return None
    name = model_uri[len("models:/") : -len(f"@{CHAMPION_ALIAS}")]
    return name if name and "/" not in name and "@" not in name else None
