"""Fixtures for Ray Train tests: ml-100k prepared once per session, a small fast model config."""

from __future__ import annotations

from pathlib import Path

import pytest

from raytrain.config import DataConfig, load_config
from raytrain.data.prepare import prepare_dataset

REPO = Path(__file__).resolve().parents[2]
ML100K = REPO.parent / "shared" / "data" / "ml-100k" / "ratings.csv"


@pytest.fixture(scope="session")
def ml100k_prepared(ray_session, tmp_path_factory):
    data = DataConfig(format="movielens", path=str(ML100K), threshold=4, min_items_per_user=5, n_heldout=100, seed=1)
    return prepare_dataset(data, str(tmp_path_factory.mktemp("ml100k") / "prepared"))


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
