"""The encoder consumes CSR batches: sparse and dense inputs give the same numbers."""

import pytest
import torch
import torch.nn.functional as F

from raytrain.config import ModelConfig, PIAConfig
from raytrain.models import build_model
from raytrain.models.sparse import SparseLinear, normalize_and_mask, row_indices, row_sums

# Torch warns once that sparse CSR support is "beta".
pytestmark = pytest.mark.filterwarnings("ignore:Sparse CSR tensor support")

N_ITEMS = 30


def random_binary(users: int = 8, items: int = N_ITEMS, density: float = 0.3, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    dense = (torch.rand(users, items, generator=generator) < density).float()
    dense[0] = 0.0  # an empty user must not produce NaNs
    dense[1, :3] = 1.0
    return dense


def test_row_helpers():
    dense = random_binary()
    csr = dense.to_sparse_csr()
    assert torch.equal(row_sums(csr), dense.sum(dim=1))
    assert torch.equal(row_indices(csr), dense.nonzero()[:, 0])


def test_normalisation_without_mask_equals_dense_l2_normalize():
    dense = random_binary()
    normalised = normalize_and_mask(dense.to_sparse_csr(), epsilon=0.0).to_dense()
    assert torch.allclose(normalised, F.normalize(dense, dim=1))


def test_mask_drops_about_epsilon_and_rescales_the_kept_values():
    dense = torch.ones(50, 200)
    generator = torch.Generator().manual_seed(3)
    masked = normalize_and_mask(dense.to_sparse_csr(), 0.5, generator).to_dense()
    kept = masked > 0
    assert kept.float().mean().item() == pytest.approx(0.5, abs=0.02)
    # Every kept entry is the normalised value 1/sqrt(200) scaled by 1 / (1 - epsilon).
    assert torch.allclose(masked[kept], torch.full_like(masked[kept], 2.0 / 200**0.5))


def test_sparse_linear_matches_dense_values_and_gradients():
    torch.manual_seed(0)
    layer = SparseLinear(N_ITEMS, 5)
    dense = random_binary() * 0.5
    sparse_out = layer(dense.to_sparse_csr())
    sparse_out.pow(2).sum().backward()
    sparse_grad = layer.weight.grad.clone()
    layer.zero_grad()
    dense_out = dense @ layer.weight + layer.bias
    dense_out.pow(2).sum().backward()
    assert torch.allclose(sparse_out, dense_out, atol=1e-6)
    assert torch.allclose(sparse_grad, layer.weight.grad, atol=1e-5)


def test_multvae_encoder_equals_a_dense_reference():
    torch.manual_seed(0)
    model = build_model(ModelConfig(hidden_dim=16, latent_dim=4), N_ITEMS).eval()
    dense = random_binary()
    mu, logvar = model.encode(dense.to_sparse_csr())
    base = model.base
    hidden = torch.tanh(F.normalize(dense, dim=1) @ base.input.weight + base.input.bias)
    ref_mu, ref_logvar = base.latent(hidden).chunk(2, dim=-1)
    assert torch.allclose(mu, ref_mu, atol=1e-6)
    assert torch.allclose(logvar, ref_logvar, atol=1e-6)


@pytest.mark.parametrize("name", ["multvae", "multdae", "recvae"])
@pytest.mark.parametrize("training", [False, True])
def test_sparse_and_dense_batches_give_the_same_outputs(name, training):
    config = ModelConfig(name=name, hidden_dim=16, latent_dim=4, pia=PIAConfig(enabled=True))
    torch.manual_seed(0)
    model = build_model(config, N_ITEMS).train(training)
    dense = random_binary()
    torch.manual_seed(1)
    from_sparse = model(dense.to_sparse_csr())
    torch.manual_seed(1)
    from_dense = model(dense)
    for sparse_value, dense_value in zip(from_sparse, from_dense):
        if sparse_value is None:
            assert dense_value is None
        else:
            assert torch.allclose(sparse_value, dense_value, atol=1e-6)
    assert torch.isfinite(from_sparse.logits).all()
