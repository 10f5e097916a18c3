"""Popularity and EASE baselines against direct computations."""

import numpy as np
import pytest
import torch

from raytrain.models.baselines import fit_ease, fit_popularity

pytestmark = pytest.mark.filterwarnings("ignore:Sparse CSR tensor support")

TRAIN = torch.tensor([
    [1.0, 1, 0, 0, 1],
    [1, 0, 1, 0, 0],
    [0, 1, 1, 1, 0],
    [1, 1, 0, 0, 0],
])


def test_popularity_scores_are_training_counts_for_every_user():
    model = fit_popularity(TRAIN.to_sparse_csr())
    logits = model(torch.zeros(2, 5).to_sparse_csr()).logits
    assert logits.tolist() == [[3, 3, 2, 1, 1]] * 2


def test_ease_matches_the_closed_form():
    l2 = 2.0
    model = fit_ease(TRAIN.to_sparse_csr(), l2=l2)
    x = TRAIN.double().numpy()
    precision = np.linalg.inv(x.T @ x + l2 * np.eye(5))
    expected = np.eye(5) - precision / np.diag(precision)[None, :]
    np.fill_diagonal(expected, 0.0)
    assert np.allclose(model.weights.numpy(), expected, atol=1e-6)
    assert np.allclose(np.diag(model.weights.numpy()), 0.0)
    user = torch.tensor([[1.0, 0, 0, 1, 0]])
    assert torch.allclose(model(user.to_sparse_csr()).logits, user @ model.weights)


def test_ease_refuses_huge_catalogues():
    with pytest.raises(ValueError, match="EASE"):
        fit_ease(TRAIN.to_sparse_csr(), max_items=4)
