"""Build the trained module from :class:`raytrain.config.ModelConfig`."""

from __future__ import annotations

from torch import nn

from raytrain.config import ModelConfig
from raytrain.models.anchors import ItemAnchors
from raytrain.models.multvae import MultDAE, MultVAE
from raytrain.models.recommender import Recommender
from raytrain.models.recvae import RecVAE

BASES: dict[str, type[nn.Module]] = {"multvae": MultVAE, "multdae": MultDAE, "recvae": RecVAE}


def build_model(model: ModelConfig, n_items: int) -> Recommender:
    """A :class:`Recommender` (base model + PIA anchors when ``model.pia.enabled``).

    Initialisation draws from the global torch RNG: seed it first for reproducible weights.

    Raises:
        ValueError: unknown ``model.name`` or ``n_items < 1``.
    """
    if model.name not in BASES:
        raise ValueError(f"model.name must be one of {sorted(BASES)}, got {model.name!r}")
    if n_items < 1:
        raise ValueError(f"n_items must be >= 1, got {n_items}")
    base = BASES[model.name](n_items, model.hidden_dim, model.latent_dim)
    anchors = ItemAnchors(n_items, model.latent_dim) if model.pia.enabled else None
    return Recommender(base, model.epsilon, anchors)
