"""Multi-VAE and Multi-DAE (Liang et al. 2018, "Variational Autoencoders for Collaborative Filtering").

Both map a preprocessed (normalised, masked) CSR batch to a latent code and decode it to item
logits. Architecture with the default dims: encoder ``I -> 600 -> 2 * 200`` (tanh), decoder
``200 -> 600 -> I`` (tanh between the layers, no activation on the logits). Preprocessing,
sampling and the loss live elsewhere (``sparse.py``, ``recommender.py``, ``losses.py``).
"""

from __future__ import annotations

import torch
from torch import nn

from raytrain.models.sparse import SparseLinear


def _init_linear(layer: nn.Linear | SparseLinear) -> None:
    # Liang's reference uses Xavier-uniform weights and small normal biases.
    nn.init.xavier_uniform_(layer.weight)
    nn.init.normal_(layer.bias, std=0.001)


class MultDecoder(nn.Module):
    """``latent -> hidden -> I`` with tanh in between; returns unnormalised logits."""

    def __init__(self, n_items: int, hidden_dim: int, latent_dim: int) -> None:
        super().__init__()
        self.hidden = nn.Linear(latent_dim, hidden_dim)
        self.output = nn.Linear(hidden_dim, n_items)
        for layer in (self.hidden, self.output):
            _init_linear(layer)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """Args: z: ``(B, d)``. Returns: logits ``(B, I)``."""
        return self.output(torch.tanh(self.hidden(z)))


class MultVAE(nn.Module):
    """Multi-VAE: Gaussian encoder ``q(z | x_h) = N(mu, diag(exp(logvar)))``, multinomial decoder."""

    composite_prior = False

    def __init__(self, n_items: int, hidden_dim: int = 600, latent_dim: int = 200) -> None:
        super().__init__()
        self.latent_dim = latent_dim
        self.input = SparseLinear(n_items, hidden_dim)
        self.latent = nn.Linear(hidden_dim, 2 * latent_dim)
        self.decoder = MultDecoder(n_items, hidden_dim, latent_dim)
        _init_linear(self.input)
        _init_linear(self.latent)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Args: x: preprocessed CSR ``(B, I)``. Returns: ``mu, logvar``, each ``(B, d)``."""
        hidden = torch.tanh(self.input(x))
        mu, logvar = self.latent(hidden).chunk(2, dim=-1)
        return mu, logvar

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Args: z: ``(B, d)``. Returns: logits ``(B, I)``."""
        return self.decoder(z)

    def encoder_parameters(self) -> list[nn.Parameter]:
        return [*self.input.parameters(), *self.latent.parameters()]

    def decoder_parameters(self) -> list[nn.Parameter]:
        return list(self.decoder.parameters())


class MultDAE(nn.Module):
    """Multi-DAE: deterministic code ``mu`` (no ``logvar``, no KL), same decoder."""

    composite_prior = False

    def __init__(self, n_items: int, hidden_dim: int = 600, latent_dim: int = 200) -> None:
        super().__init__()
        self.latent_dim = latent_dim
        self.input = SparseLinear(n_items, hidden_dim)
        self.latent = nn.Linear(hidden_dim, latent_dim)
        self.decoder = MultDecoder(n_items, hidden_dim, latent_dim)
        _init_linear(self.input)
        _init_linear(self.latent)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, None]:
        """Args: x: preprocessed CSR ``(B, I)``. Returns: ``(code (B, d), None)``."""
        # Liang's DAE has tanh on every layer, the code included.
        return torch.tanh(self.latent(torch.tanh(self.input(x)))), None

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z)

    def encoder_parameters(self) -> list[nn.Parameter]:
        return [*self.input.parameters(), *self.latent.parameters()]

    def decoder_parameters(self) -> list[nn.Parameter]:
        return list(self.decoder.parameters())
