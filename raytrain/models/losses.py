"""Objective terms as pure functions of model outputs (per-user values, shape ``(B,)``).

Paper references: Eq. (1) negative beta-ELBO (Liang et al. 2018), Eq. (8)-(10) PIA alignment
(Vuong et al.), RecVAE's composite-prior KL and user-dependent weight (Shenbin et al. 2020).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from raytrain.models.recvae import composite_prior_log_density, log_normal_density
from raytrain.models.sparse import row_indices, row_sums

if TYPE_CHECKING:
    from raytrain.models.recommender import ModelOutput

PIA_FORMS = ("exact", "centroid")


def multinomial_nll(logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``-sum_i x_i log softmax(logits)_i`` per user (the reconstruction term of Eq. 1).

    Args:
        logits: ``(B, I)``.
        x: the full (unmasked) targets, CSR or dense ``(B, I)``.

    Returns:
        ``(B,)`` float32.
    """
    log_probs = torch.log_softmax(logits.float(), dim=-1)
    if x.layout == torch.sparse_csr:
        # Gather only the positives: O(nnz) instead of a dense (B, I) product.
        rows = row_indices(x)
        picked = log_probs[rows, x.col_indices().long()] * x.values().float()
        return -torch.zeros(x.shape[0], device=logits.device).index_add(0, rows, picked)
    return -(log_probs * x.float()).sum(dim=-1)


def gaussian_kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """``KL(N(mu, diag(exp(logvar))) || N(0, I))`` per user, in closed form. Shapes ``(B, d) -> (B,)``."""
    mu, logvar = mu.float(), logvar.float()
    return 0.5 * (logvar.exp() + mu.pow(2) - 1.0 - logvar).sum(dim=-1)


def composite_prior_kl(
    z: torch.Tensor,
    mu: torch.Tensor,
    logvar: torch.Tensor,
    old_mu: torch.Tensor,
    old_logvar: torch.Tensor,
) -> torch.Tensor:
    """Single-sample estimate of ``KL(q(z|x) || p(z))`` under RecVAE's composite prior, ``(B,)``.

    Args:
        z: the reparameterised sample ``(B, d)`` drawn from ``q = N(mu, exp(logvar))``.
        mu, logvar: posterior ``(B, d)``.
        old_mu, old_logvar: posterior of the frozen encoder ``(B, d)`` (a prior component).
    """
    z, mu, logvar = z.float(), mu.float(), logvar.float()
    log_q = log_normal_density(z, mu, logvar)
    log_p = composite_prior_log_density(z, old_mu.float(), old_logvar.float())
    return (log_q - log_p).sum(dim=-1)


def alignment_loss(
    mu: torch.Tensor,
    logvar: torch.Tensor | None,
    centroid: torch.Tensor,
    mean_sq_norm: torch.Tensor,
    form: str = "exact",
) -> torch.Tensor:
    """PIA loss ``L_A = mean_{i in S_x} E_{z ~ q(z|x_h)} ||z - e_i||^2`` in closed form (Eq. 9-10).

    ``L_A = ||mu - e_bar||^2 + tr(Sigma) + (mean_i ||e_i||^2 - ||e_bar||^2)``; ``mu, Sigma``
    come from the masked input, ``e_bar`` and ``mean_i ||e_i||^2`` from the full positives.

    Args:
        mu: posterior mean ``(B, d)``.
        logvar: posterior log-variance ``(B, d)``, or None for a deterministic code (DAE).
        centroid: ``e_bar_x`` ``(B, d)``.
        mean_sq_norm: ``mean_{i in S_x} ||e_i||^2`` ``(B,)``.
        form: ``"exact"`` (Eq. 9, keeps the anchor-spread term, which moves only ``E``) or
            ``"centroid"`` (drops it).

    Returns:
        ``(B,)`` float32.
    """
    if form not in PIA_FORMS:
        raise ValueError(f"unknown PIA form {form!r}; expected one of {PIA_FORMS}")
    mu, centroid = mu.float(), centroid.float()
    loss = (mu - centroid).pow(2).sum(dim=-1)
    if logvar is not None:
        loss = loss + logvar.float().exp().sum(dim=-1)
    if form == "exact":
        loss = loss + mean_sq_norm.float() - centroid.pow(2).sum(dim=-1)
    return loss


def beta_at_step(step: int, total_updates: int, beta_cap: float, anneal_fraction: float) -> float:
    """KL weight for update ``step`` (0-based): linear from 0 to ``beta_cap`` then flat.

    The ramp spans ``anneal_fraction * total_updates`` updates, so ``beta`` first equals the cap
    at ``step == round(anneal_fraction * total_updates)``; ``anneal_fraction == 0`` means no ramp.
    """
    anneal_steps = round(anneal_fraction * total_updates)
    if anneal_steps <= 0:
        return beta_cap
    return beta_cap * min(1.0, step / anneal_steps)


def total_loss(
    output: "ModelOutput",
    x: torch.Tensor,
    beta: float,
    lambda_a: float = 0.0,
    gamma: float = 0.0,
    form: str = "exact",
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Batch objective ``mean_u [nll + w_u * KL + lambda_a * L_A]`` (Eq. 1 and Eq. 8).

    Args:
        output: the model's forward output for the batch ``x``.
        x: the full (unmasked) targets, CSR ``(B, I)``.
        beta: KL weight for Multi-VAE (ignored when ``gamma > 0`` and the model is RecVAE).
        lambda_a: PIA weight; the term is skipped when the output has no anchor statistics.
        gamma: RecVAE user-dependent KL weight ``w_u = gamma * |x_u|`` (0: use ``beta``).
        form: PIA form, see :func:`alignment_loss`.

    Returns:
        The scalar loss and per-term batch sums (``nll``, ``kl``, ``align``; detached).
    """
    nll = multinomial_nll(output.logits, x)
    zeros = torch.zeros_like(nll)
    if output.logvar is None:
        kl = zeros
    elif output.prior_mu is not None:
        kl = composite_prior_kl(output.z, output.mu, output.logvar, output.prior_mu, output.prior_logvar)
    else:
        kl = gaussian_kl(output.mu, output.logvar)
    use_gamma = gamma > 0.0 and output.prior_mu is not None
    kl_weight = gamma * row_sums(x).float() if use_gamma else beta
    align = zeros
    if output.anchor_centroid is not None:
        align = alignment_loss(output.mu, output.logvar, output.anchor_centroid, output.anchor_sq_norm, form)
    per_user = nll + kl_weight * kl + lambda_a * align
    parts = {"nll": nll.detach().sum(), "kl": kl.detach().sum(), "align": align.detach().sum()}
    return per_user.mean(), parts
