"""Objective terms against hand-computed values and a Monte Carlo check of the PIA closed form."""

import math

import pytest
import torch

from raytrain.models.losses import (
    alignment_loss,
    beta_at_step,
    composite_prior_kl,
    gaussian_kl,
    multinomial_nll,
    total_loss,
)
from raytrain.models.anchors import ItemAnchors
from raytrain.models.sparse import csr_tensor
from raytrain.models.recommender import ModelOutput
from raytrain.models.recvae import PRIOR_WEIGHTS, WIDE_PRIOR_LOGVAR, composite_prior_log_density

# Torch warns once that sparse CSR support is "beta".
pytestmark = pytest.mark.filterwarnings("ignore:Sparse CSR tensor support")


def test_multinomial_nll_hand_computed_sparse_and_dense():
    # softmax([0, 0, ln 2]) = [1/4, 1/4, 1/2]; positives {0, 2}: -(ln 1/4 + ln 1/2) = ln 8.
    logits = torch.tensor([[0.0, 0.0, math.log(2.0)]])
    x = torch.tensor([[1.0, 0.0, 1.0]])
    assert multinomial_nll(logits, x).item() == pytest.approx(math.log(8.0))
    assert multinomial_nll(logits, x.to_sparse_csr()).item() == pytest.approx(math.log(8.0))


def test_gaussian_kl_hand_computed():
    mu = torch.tensor([[1.0, 0.0]])
    logvar = torch.tensor([[0.0, math.log(2.0)]])
    # 0.5 * [(1 + 1 - 1 - 0) + (2 + 0 - 1 - ln 2)]
    assert gaussian_kl(mu, logvar).item() == pytest.approx(0.5 * (1 + 1 - math.log(2.0)))
    assert gaussian_kl(torch.zeros(3, 4), torch.zeros(3, 4)).tolist() == [0.0, 0.0, 0.0]


def test_composite_prior_density_is_the_weighted_per_dimension_mixture():
    z = torch.tensor([[0.3, -1.2]])
    old_mu, old_logvar = torch.tensor([[0.5, 0.0]]), torch.tensor([[-1.0, 0.5]])

    def normal_pdf(value, mean, variance):
        return math.exp(-((value - mean) ** 2) / (2 * variance)) / math.sqrt(2 * math.pi * variance)

    expected = [
        math.log(
            PRIOR_WEIGHTS[0] * normal_pdf(z[0, d].item(), 0.0, 1.0)
            + PRIOR_WEIGHTS[1] * normal_pdf(z[0, d].item(), old_mu[0, d].item(), math.exp(old_logvar[0, d].item()))
            + PRIOR_WEIGHTS[2] * normal_pdf(z[0, d].item(), 0.0, math.exp(WIDE_PRIOR_LOGVAR))
        )
        for d in range(2)
    ]
    assert composite_prior_log_density(z, old_mu, old_logvar)[0].tolist() == pytest.approx(expected, rel=1e-5)
    # With a point-mass-like posterior at z the single-sample KL is log q(z) - log p(z).
    kl = composite_prior_kl(z, z, torch.zeros_like(z), old_mu, old_logvar)
    log_q = -0.5 * math.log(2 * math.pi) * 2
    assert kl.item() == pytest.approx(log_q - sum(expected), rel=1e-5)


def random_setup(seed=0, users=4, items=12, dim=3):
    generator = torch.Generator().manual_seed(seed)
    anchors = ItemAnchors(items, dim)
    with torch.no_grad():
        anchors.weight.copy_(torch.randn(items, dim, generator=generator))
    x = (torch.rand(users, items, generator=generator) < 0.4).float()
    x[:, 0] = 1.0
    mu = torch.randn(users, dim, generator=generator)
    logvar = torch.randn(users, dim, generator=generator) * 0.5
    return anchors, x, mu, logvar


def test_alignment_closed_form_equals_monte_carlo():
    anchors, x, mu, logvar = random_setup()
    centroid, mean_sq_norm = anchors.statistics(x.to_sparse_csr())
    closed = alignment_loss(mu, logvar, centroid, mean_sq_norm, "exact")
    samples = 100_000
    generator = torch.Generator().manual_seed(1)
    noise = torch.randn(samples, *mu.shape, generator=generator, dtype=torch.float64)
    z = mu.double() + noise * (0.5 * logvar.double()).exp()  # (S, B, d)
    weight = anchors.weight.detach().double()
    for user in range(x.shape[0]):
        items = x[user].nonzero()[:, 0]
        distances = (z[:, user, None, :] - weight[items][None]).pow(2).sum(-1)  # (S, |S_x|)
        monte_carlo = distances.mean().item()
        assert closed[user].item() == pytest.approx(monte_carlo, rel=0.01)


def test_alignment_exact_equals_direct_mean_and_centroid_form_drops_the_spread():
    anchors, x, mu, logvar = random_setup(seed=2)
    centroid, mean_sq_norm = anchors.statistics(x.to_sparse_csr())
    exact = alignment_loss(mu, logvar, centroid, mean_sq_norm, "exact")
    centroid_only = alignment_loss(mu, logvar, centroid, mean_sq_norm, "centroid")
    weight = anchors.weight.detach()
    for user in range(x.shape[0]):
        items = weight[x[user] > 0]
        direct = (mu[user] - items).pow(2).sum(-1).mean() + logvar[user].exp().sum()
        spread = items.pow(2).sum(-1).mean() - items.mean(0).pow(2).sum()
        assert exact[user].item() == pytest.approx(direct.item(), rel=1e-5)
        assert (exact[user] - centroid_only[user]).item() == pytest.approx(spread.item(), rel=1e-4)
    # A deterministic code (Multi-DAE) has no variance term.
    no_variance = alignment_loss(mu, None, centroid, mean_sq_norm, "centroid")
    assert torch.allclose(no_variance, (mu - centroid).pow(2).sum(-1))
    with pytest.raises(ValueError):
        alignment_loss(mu, logvar, centroid, mean_sq_norm, "bogus")


def test_beta_reaches_its_cap_exactly_at_the_end_of_the_ramp():
    total, fraction, cap = 400, 0.25, 0.2
    ramp = [beta_at_step(step, total, cap, fraction) for step in range(0, 120)]
    assert ramp[0] == 0.0
    assert ramp[50] == pytest.approx(0.1)
    assert ramp[99] < cap
    assert ramp[100] == pytest.approx(cap)
    assert max(ramp) == pytest.approx(cap)
    assert all(b <= a for a, b in zip(ramp[1:], ramp))  # non-decreasing
    assert beta_at_step(0, total, cap, 0.0) == cap


def test_total_loss_combines_terms_and_uses_gamma_times_history_size_for_recvae():
    anchors, x, mu, logvar = random_setup(seed=3)
    csr = x.to_sparse_csr()
    logits = torch.randn(x.shape[0], x.shape[1])
    centroid, sq = anchors.statistics(csr)
    output = ModelOutput(logits, mu, logvar, mu, centroid, sq)
    loss, parts = total_loss(output, csr, beta=0.3, lambda_a=0.5)
    expected = (multinomial_nll(logits, x) + 0.3 * gaussian_kl(mu, logvar)
                + 0.5 * alignment_loss(mu, logvar, centroid, sq)).mean()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
    assert parts["nll"].item() == pytest.approx(multinomial_nll(logits, x).sum().item(), rel=1e-6)
    recvae = output._replace(prior_mu=torch.zeros_like(mu), prior_logvar=torch.zeros_like(mu))
    loss, parts = total_loss(recvae, csr, beta=0.3, gamma=0.01)
    kl = composite_prior_kl(mu, mu, logvar, torch.zeros_like(mu), torch.zeros_like(mu))
    expected = (multinomial_nll(logits, x) + 0.01 * x.sum(1) * kl).mean()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)


@pytest.mark.parametrize("index_dtype", [torch.int32, torch.int64])
def test_anchor_statistics_and_gradients_equal_a_dense_reference(index_dtype):
    """The embedding_bag forward and the hand-written backward of the squared-norm term match
    dense autograd, with non-unit weights, an empty row and both CSR index widths."""
    torch.manual_seed(3)
    anchors = ItemAnchors(n_items=9, latent_dim=4)
    dense = torch.zeros(4, 9)
    dense[0, [1, 4, 8]] = torch.tensor([1.0, 2.0, 0.5])
    dense[2, [0, 1]] = 1.0
    dense[3, 8] = 3.0  # row 1 stays empty
    csr = dense.to_sparse_csr()
    x = csr_tensor(csr.crow_indices().to(index_dtype), csr.col_indices().to(index_dtype), csr.values(),
                   tuple(csr.shape))
    grad_c, grad_m = torch.randn(4, 4), torch.randn(4)

    centroid, mean_sq = anchors.statistics(x)
    ((centroid * grad_c).sum() + (mean_sq * grad_m).sum()).backward()
    got = anchors.weight.grad.clone()

    weight = anchors.weight.detach().clone().requires_grad_(True)
    counts = dense.sum(-1).clamp_min(1.0)
    ref_c = dense @ weight / counts[:, None]
    ref_m = dense @ weight.pow(2).sum(-1) / counts
    ((ref_c * grad_c).sum() + (ref_m * grad_m).sum()).backward()
    assert torch.allclose(centroid, ref_c, atol=1e-6) and torch.allclose(mean_sq, ref_m, atol=1e-5)
    assert centroid[1].abs().sum() == 0 and mean_sq[1] == 0
    assert torch.allclose(got, weight.grad, atol=1e-5)
