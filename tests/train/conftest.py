"""Fixtures for Ray Train tests: a small, fast model config on ml-100k (prepared in tests/conftest.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from raytrain.config import load_config

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def small_config():
    """Factory: ml-100k with a small Multi-VAE + PIA so a few epochs of DDP take seconds on 2 cores."""
    return _small_config


def _small_config(*overrides: str):
    return load_config(
        REPO / "configs" / "ml-100k.yaml",
        [
            "model.hidden_dim=200",
            "model.latent_dim=64",
            "train.epochs=6",
            "scaling.cpus_per_worker=0.5",
            "train.max_failures=2",
            *overrides,
        ],
    )
