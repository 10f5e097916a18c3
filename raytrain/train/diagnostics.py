"""Latent diagnostic of the paper's Proposition 3.2: how much the input mask moves ``mu``.

For each sampled user ``x`` and ``K`` random masks ``b``:

- mask variance: ``tr Var_b[mu(x * b)]`` (unbiased over the K masks);
- centroid distance: ``E_b ||mu(x * b) - e_bar_x||^2`` with ``e_bar_x`` the centroid of the
  anchors of the user's items. It needs an anchor table: the model's own (PIA runs) or one
  passed in (e.g. a PIA model's, to compare a plain run in the same anchor geometry); NaN else.
- mask spread: ``||mu(x) - mean_users mu(x)||^2``, the spread of clean codes across users,
  so ``mask_variance / mask_spread`` is a scale-free ratio (PIA may also shrink the latent scale).

PIA should shrink the variance and the distance (Prop. 3.2: by tau^2 and tau).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from raytrain.models.anchors import ItemAnchors
from raytrain.models.recommender import Recommender


@dataclass(frozen=True)
class MaskDiagnosticSums:
    """Sums over ``users`` users (all-reducible like the metric sums)."""

    users: int
    variance: float
    spread: float
    distance: float

    def means(self) -> dict[str, float]:
        users = max(self.users, 1)
        return {
            "mask_variance": self.variance / users,
            "mask_variance_ratio": self.variance / max(self.spread, 1e-30),
            "centroid_distance": self.distance / users,
        }


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The module inside a DistributedDataParallel (or similar) wrapper."""
    return getattr(model, "module", model)


@torch.no_grad()
def mask_diagnostic_sums(
    model: torch.nn.Module,
    x: torch.Tensor,
    n_masks: int = 8,
    epsilon: float | None = None,
    anchors: ItemAnchors | None = None,
    seed: int = 0,
) -> MaskDiagnosticSums:
    """Mask variance, spread and centroid distance summed over the rows of ``x``.

    Args:
        model: a :class:`Recommender` (possibly DDP-wrapped).
        x: CSR ``(B, I)`` of users' positives (e.g. validation fold-in rows); empty rows skipped.
        n_masks: masks per user, K >= 2.
        epsilon: mask drop rate; defaults to the model's training rate.
        anchors: anchor table for the distance; defaults to the model's own (None: NaN).
        seed: seed of a private generator, so the diagnostic leaves the global RNG untouched.

    Returns:
        :class:`MaskDiagnosticSums`.
    """
    core: Recommender = unwrap(model)
    if n_masks < 2:
        raise ValueError(f"n_masks must be >= 2 to estimate a variance, got {n_masks}")
    crow = x.crow_indices()
    keep = (crow[1:] - crow[:-1]) > 0
    epsilon = core.epsilon if epsilon is None else epsilon
    generator = torch.Generator(device=x.device).manual_seed(seed)
    masked = torch.stack([core.encode(x, epsilon, generator)[0].float() for _ in range(n_masks)])
    variance = masked.var(dim=0, correction=1).sum(dim=-1)[keep]
    clean = core.encode(x, 0.0)[0].float()[keep]
    spread = (clean - clean.mean(dim=0)).pow(2).sum(dim=-1)
    anchors = anchors if anchors is not None else core.anchors
    if anchors is None:
        distance = math.nan
    else:
        centroid = anchors.centroid(x).float()
        distance = (masked - centroid).pow(2).sum(dim=-1).mean(dim=0)[keep].sum().item()
    return MaskDiagnosticSums(int(keep.sum().item()), variance.sum().item(), spread.sum().item(), distance)


def mask_diagnostics(
    model: torch.nn.Module,
    x: torch.Tensor,
    n_masks: int = 8,
    epsilon: float | None = None,
    anchors: ItemAnchors | None = None,
    seed: int = 0,
) -> dict[str, float]:
    """Means of :func:`mask_diagnostic_sums`: ``mask_variance``, ``mask_variance_ratio``,
    ``centroid_distance`` (NaN without anchors)."""
    return mask_diagnostic_sums(model, x, n_masks, epsilon, anchors, seed).means()
