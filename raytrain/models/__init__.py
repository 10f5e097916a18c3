"""Models: Multi-VAE, Multi-DAE, RecVAE, PIA item anchors, losses and baselines."""

from raytrain.models.build import build_model
from raytrain.models.recommender import ModelOutput, Recommender

__all__ = ["ModelOutput", "Recommender", "build_model"]
