"""Non-neural baselines behind the models' scoring interface (``model(x).logits``).

- :class:`Popularity`: every user gets the training item counts as scores.
- :class:`EASE` (Steck 2019, "Embarrassingly Shallow Autoencoders for Sparse Data"): the
  closed-form item-item model ``B = I - P diag(1 / diag(P))``, ``P = (X^T X + l2 I)^-1``, with
  ``diag(B) = 0``; scores ``x @ B``. Memory is O(I^2), so it is meant for catalogues up to ~20k.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse
import torch
from torch import nn

from raytrain.models.recommender import ModelOutput
from raytrain.models.sparse import as_csr

EASE_MAX_ITEMS = 30_000


class Popularity(nn.Module):
    """Item-popularity scorer; ``popularity`` is a ``(I,)`` buffer of training counts."""

    def __init__(self, popularity: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("popularity", popularity.float())

    def forward(self, x: torch.Tensor) -> ModelOutput:
        """Args: x: ``(B, I)`` (only its batch size is used). Returns: logits ``(B, I)``."""
        return ModelOutput(self.popularity.expand(x.shape[0], -1), None)


class EASE(nn.Module):
    """EASE scorer; ``weights`` is the ``(I, I)`` item-item matrix with a zero diagonal."""

    def __init__(self, weights: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("weights", weights.float())

    def forward(self, x: torch.Tensor) -> ModelOutput:
        """Args: x: CSR or dense ``(B, I)``. Returns: logits ``(B, I)``."""
        return ModelOutput(as_csr(x).float() @ self.weights, None)


def fit_popularity(train: torch.Tensor) -> Popularity:
    """Count each item's training users. Args: train: CSR ``(U, I)``."""
    train = as_csr(train)
    counts = torch.zeros(train.shape[1], dtype=torch.float64)
    counts.index_add_(0, train.col_indices().long(), train.values().double())
    return Popularity(counts)


def _to_scipy(train: torch.Tensor) -> scipy.sparse.csr_matrix:
    train = as_csr(train).cpu()
    return scipy.sparse.csr_matrix(
        (train.values().numpy(), train.col_indices().numpy(), train.crow_indices().numpy()),
        shape=tuple(train.shape),
    )


def fit_ease(train: torch.Tensor, l2: float = 300.0, max_items: int = EASE_MAX_ITEMS) -> EASE:
    """Closed-form EASE on the training matrix.

    Args:
        train: CSR ``(U, I)`` of training users' positives.
        l2: ridge strength lambda (Steck uses a few hundred on MovieLens).
        max_items: refuse larger catalogues (the Gram matrix is dense ``I x I``).

    Raises:
        ValueError: ``I > max_items``.
    """
    n_items = train.shape[1]
    if n_items > max_items:
        raise ValueError(f"EASE needs a dense {n_items}x{n_items} matrix; limit is {max_items} items")
    matrix = _to_scipy(train).astype(np.float64)
    gram = (matrix.T @ matrix).toarray()
    gram[np.diag_indices(n_items)] += l2
    precision = np.linalg.inv(gram)
    weights = -precision / np.diag(precision)[None, :]
    weights[np.diag_indices(n_items)] = 0.0
    return EASE(torch.from_numpy(weights))
