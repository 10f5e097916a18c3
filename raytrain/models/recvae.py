"""RecVAE (Shenbin et al. 2020, "RecVAE: a New Variational Autoencoder for Top-N
Recommendations with Implicit Feedback").

Differences from Multi-VAE: a densely connected 5-layer encoder with LayerNorm and swish, a
single linear decoder ``d -> I``, a composite prior that mixes a standard normal, the posterior
of a frozen copy of the encoder ("old posterior") and a wide normal, a KL weight that grows with
the user's history (``gamma * |x|``) and alternating encoder/decoder updates. The alternation is
driven by ``train/loop.py``; this module only provides ``refresh_prior``.
"""

from __future__ import annotations

import copy
import math

import torch
import torch.nn.functional as F
from torch import nn

from raytrain.models.sparse import SparseLinear

# Composite prior (paper Eq. 6): standard normal, old posterior, wide normal.
PRIOR_WEIGHTS = (3 / 20, 3 / 4, 1 / 10)
WIDE_PRIOR_LOGVAR = 10.0
# The reference implementation uses a large LayerNorm epsilon; it matters for tiny histories.
LAYER_NORM_EPS = 0.1
N_DENSE_LAYERS = 5


class DenseEncoder(nn.Module):
    """Densely connected encoder: layer k sees swish(fc_k(h_{k-1}) + sum_{j<k} h_j), then LayerNorm."""

    def __init__(self, n_items: int, hidden_dim: int, latent_dim: int) -> None:
        super().__init__()
        self.input = SparseLinear(n_items, hidden_dim)
        self.hidden = nn.ModuleList(nn.Linear(hidden_dim, hidden_dim) for _ in range(N_DENSE_LAYERS - 1))
        self.norms = nn.ModuleList(
            nn.LayerNorm(hidden_dim, eps=LAYER_NORM_EPS) for _ in range(N_DENSE_LAYERS)
        )
        self.mu = nn.Linear(hidden_dim, latent_dim)
        self.logvar = nn.Linear(hidden_dim, latent_dim)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Args: x: preprocessed CSR ``(B, I)``. Returns: ``mu, logvar``, each ``(B, d)``."""
        h = self.norms[0](F.silu(self.input(x)))
        skip = h
        for layer, norm in zip(self.hidden, self.norms[1:]):
            h = norm(F.silu(layer(h) + skip))
            skip = skip + h
        return self.mu(h), self.logvar(h)


class RecVAE(nn.Module):
    """RecVAE base model: ``encode``/``decode`` plus the frozen old-posterior encoder."""

    composite_prior = True

    def __init__(self, n_items: int, hidden_dim: int = 600, latent_dim: int = 200) -> None:
        super().__init__()
        self.latent_dim = latent_dim
        self.encoder = DenseEncoder(n_items, hidden_dim, latent_dim)
        self.decoder = nn.Linear(latent_dim, n_items)
        # Frozen copy: requires_grad=False keeps it out of optimizers and DDP's gradient buckets.
        self.old_encoder = copy.deepcopy(self.encoder).requires_grad_(False)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.encoder(x)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z)

    @torch.no_grad()
    def old_posterior(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Posterior of the frozen encoder for a normalised, unmasked CSR batch: ``(B, d)`` each."""
        return self.old_encoder(x)

    @torch.no_grad()
    def refresh_prior(self) -> None:
        """Copy the current encoder into the old-posterior encoder (after the encoder passes)."""
        self.old_encoder.load_state_dict(self.encoder.state_dict())

    def encoder_parameters(self) -> list[nn.Parameter]:
        return list(self.encoder.parameters())

    def decoder_parameters(self) -> list[nn.Parameter]:
        return list(self.decoder.parameters())


def log_normal_density(z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor | float) -> torch.Tensor:
    """Element-wise log N(z; mu, exp(logvar)), same shape as ``z``."""
    logvar = torch.as_tensor(logvar, dtype=z.dtype, device=z.device)
    return -0.5 * (logvar + math.log(2 * math.pi) + (z - mu).pow(2) / logvar.exp())


def composite_prior_log_density(
    z: torch.Tensor, old_mu: torch.Tensor, old_logvar: torch.Tensor
) -> torch.Tensor:
    """log p(z) of RecVAE's composite prior, per latent dimension ``(B, d)``.

    As in the reference implementation the mixture is taken per dimension (a factorised
    mixture), with weights 3/20 (N(0, I)), 3/4 (old posterior) and 1/10 (N(0, e^10 I)).
    """
    components = torch.stack(
        [
            log_normal_density(z, torch.zeros_like(z), 0.0) + math.log(PRIOR_WEIGHTS[0]),
            log_normal_density(z, old_mu, old_logvar) + math.log(PRIOR_WEIGHTS[1]),
            log_normal_density(z, torch.zeros_like(z), WIDE_PRIOR_LOGVAR) + math.log(PRIOR_WEIGHTS[2]),
        ],
        dim=-1,
    )
    return torch.logsumexp(components, dim=-1)
