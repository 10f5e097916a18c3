"""One ``nn.Module`` around a base VAE/DAE and, optionally, the PIA item anchors.

Everything that is trained sits in this module, and everything the loss needs is computed in
its ``forward``, so ``DistributedDataParallel`` wraps a single module and sees every trainable
parameter used in every forward (no ``find_unused_parameters`` needed).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from raytrain.models.anchors import ItemAnchors
from raytrain.models.sparse import as_csr, normalize_and_mask


class ModelOutput(NamedTuple):
    """Forward output. A NamedTuple so DDP can traverse it.

    Attributes:
        logits: item scores ``(B, I)`` (unnormalised log-probabilities).
        mu: posterior mean / code ``(B, d)``.
        logvar: posterior log-variance ``(B, d)``; None for Multi-DAE.
        z: the latent fed to the decoder ``(B, d)`` (a sample in training, ``mu`` in eval).
        anchor_centroid: ``e_bar_x`` ``(B, d)``; only in training with PIA enabled.
        anchor_sq_norm: ``mean_{i in S_x} ||e_i||^2`` ``(B,)``; only in training with PIA.
        prior_mu: RecVAE old-posterior mean ``(B, d)``; only in training for RecVAE.
        prior_logvar: RecVAE old-posterior log-variance ``(B, d)``; idem.
    """

    logits: torch.Tensor
    mu: torch.Tensor | None
    logvar: torch.Tensor | None = None
    z: torch.Tensor | None = None
    anchor_centroid: torch.Tensor | None = None
    anchor_sq_norm: torch.Tensor | None = None
    prior_mu: torch.Tensor | None = None
    prior_logvar: torch.Tensor | None = None


class Recommender(nn.Module):
    """Base model (``encode``/``decode``) + optional :class:`ItemAnchors`.

    Args:
        base: a MultVAE, MultDAE or RecVAE.
        epsilon: input-mask drop rate used in training mode.
        anchors: PIA anchors, or None for a plain model.
    """

    def __init__(self, base: nn.Module, epsilon: float, anchors: ItemAnchors | None = None) -> None:
        super().__init__()
        self.base = base
        self.epsilon = epsilon
        self.anchors = anchors

    @property
    def alternating(self) -> bool:
        """True for RecVAE: the loop alternates encoder and decoder passes."""
        return bool(self.base.composite_prior)

    def encode(
        self, x: torch.Tensor, epsilon: float = 0.0, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Normalise, mask (drop rate ``epsilon``) and encode a CSR/dense batch: ``mu, logvar``."""
        return self.base.encode(normalize_and_mask(as_csr(x), epsilon, generator))

    def forward(self, x: torch.Tensor, epsilon: float | None = None) -> ModelOutput:
        """Encode the (masked) batch, sample in training, decode.

        Args:
            x: the user's full positives, CSR (preferred) or dense ``(B, I)``. Dense input is
                converted to CSR first, so both layouts run the same code.
            epsilon: input-mask drop rate; None means ``self.epsilon`` in training, 0 in eval.

        Returns:
            :class:`ModelOutput`. Scoring uses ``logits`` in eval mode (``z = mu``, no mask).
        """
        x = as_csr(x)
        if epsilon is None:
            epsilon = self.epsilon if self.training else 0.0
        mu, logvar = self.encode(x, epsilon)
        z = mu
        if self.training and logvar is not None:
            z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
        logits = self.base.decode(z)
        if not self.training:
            return ModelOutput(logits, mu, logvar, z)
        centroid = sq_norm = prior_mu = prior_logvar = None
        if self.anchors is not None:
            centroid, sq_norm = self.anchors.statistics(x)
        if self.base.composite_prior:
            prior_mu, prior_logvar = self.base.old_posterior(normalize_and_mask(x, 0.0))
        return ModelOutput(logits, mu, logvar, z, centroid, sq_norm, prior_mu, prior_logvar)

    def encoder_parameters(self) -> list[nn.Parameter]:
        """Encoder parameters plus the anchors (they live in the encoder's latent space)."""
        anchors = list(self.anchors.parameters()) if self.anchors is not None else []
        return [*self.base.encoder_parameters(), *anchors]

    def decoder_parameters(self) -> list[nn.Parameter]:
        return self.base.decoder_parameters()

    @torch.no_grad()
    def refresh_prior(self) -> None:
        """RecVAE: copy the encoder into the prior's old-posterior encoder (no-op otherwise)."""
        if self.base.composite_prior:
            self.base.refresh_prior()
