"""Mask-variance diagnostic (paper Prop. 3.2) on tiny models with known answers."""

import math

import pytest
import torch

from raytrain.config import ModelConfig, PIAConfig
from raytrain.models import build_model
from raytrain.train.diagnostics import mask_diagnostic_sums, mask_diagnostics

pytestmark = pytest.mark.filterwarnings("ignore:Sparse CSR tensor support")

N_ITEMS = 25


def users(seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    dense = (torch.rand(12, N_ITEMS, generator=generator) < 0.4).float()
    dense[:, 0] = 1.0
    dense[11] = 0.0  # an empty row is skipped
    return dense.to_sparse_csr()


def model(pia: bool):
    torch.manual_seed(0)
    return build_model(ModelConfig(hidden_dim=16, latent_dim=4, pia=PIAConfig(enabled=pia)), N_ITEMS).eval()


def test_no_mask_means_no_variance_and_masks_create_variance():
    plain = model(pia=False)
    assert mask_diagnostics(plain, users(), epsilon=0.0)["mask_variance"] == pytest.approx(0.0, abs=1e-10)
    sums = mask_diagnostic_sums(plain, users(), epsilon=0.5)
    assert sums.users == 11
    assert sums.variance > 0 and sums.spread > 0
    assert math.isnan(sums.distance)  # no anchors to measure against


def test_centroid_distance_uses_the_anchor_centroid():
    pia = model(pia=True)
    with torch.no_grad():
        pia.anchors.weight.zero_()
    # With all anchors at the origin the distance is E_b ||mu(x * b)||^2.
    x = users()
    diagnostic = mask_diagnostics(pia, x, n_masks=4, epsilon=0.0)
    mu = pia.encode(x, 0.0)[0][:11]
    assert diagnostic["centroid_distance"] == pytest.approx(mu.pow(2).sum(-1).mean().item(), rel=1e-5)
    # Another model's anchors can be passed in to measure a plain model in the same geometry.
    borrowed = mask_diagnostics(model(pia=False), x, anchors=pia.anchors)
    assert math.isfinite(borrowed["centroid_distance"])


def test_diagnostic_is_repeatable_and_leaves_the_global_rng_alone():
    plain = model(pia=False)
    before = torch.get_rng_state()
    first = mask_diagnostics(plain, users(), seed=3)
    assert torch.equal(before, torch.get_rng_state())
    assert mask_diagnostics(plain, users(), seed=3) == pytest.approx(first, nan_ok=True)
    with pytest.raises(ValueError):
        mask_diagnostics(plain, users(), n_masks=1)
