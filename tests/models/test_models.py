"""Model construction, output shapes, gradient flow and RecVAE's frozen prior encoder."""

import pytest
import torch

from raytrain.config import ModelConfig, PIAConfig
from raytrain.models import ModelOutput, build_model
from raytrain.models.losses import total_loss
from raytrain.models.multvae import MultDAE, MultVAE
from raytrain.models.recvae import RecVAE

pytestmark = pytest.mark.filterwarnings("ignore:Sparse CSR tensor support")

N_ITEMS = 40


def batch(users: int = 6, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    dense = (torch.rand(users, N_ITEMS, generator=generator) < 0.25).float()
    dense[:, 0] = 1.0
    return dense.to_sparse_csr()


def config(name: str, pia: bool = False, **kwargs) -> ModelConfig:
    return ModelConfig(name=name, hidden_dim=12, latent_dim=5, pia=PIAConfig(enabled=pia), **kwargs)


@pytest.mark.parametrize(("name", "base_type"), [("multvae", MultVAE), ("multdae", MultDAE), ("recvae", RecVAE)])
def test_build_model_makes_one_module_with_optional_anchors(name, base_type):
    model = build_model(config(name, pia=True), N_ITEMS)
    assert isinstance(model.base, base_type)
    assert model.anchors.weight.shape == (N_ITEMS, 5)
    assert build_model(config(name), N_ITEMS).anchors is None
    assert model.alternating == (name == "recvae")


def test_build_model_rejects_unknown_names_and_empty_catalogues():
    with pytest.raises(ValueError, match="model.name"):
        build_model(ModelConfig(name="bogus"), N_ITEMS)
    with pytest.raises(ValueError, match="n_items"):
        build_model(ModelConfig(), 0)


def test_multvae_has_liang_architecture():
    model = build_model(ModelConfig(), 1000).base
    assert model.input.weight.shape == (1000, 600)
    assert model.latent.weight.shape == (400, 600)
    assert model.decoder.hidden.weight.shape == (600, 200)
    assert model.decoder.output.weight.shape == (1000, 600)


def test_training_and_eval_outputs():
    model = build_model(config("multvae", pia=True), N_ITEMS)
    x = batch()
    train_out = model.train()(x)
    assert isinstance(train_out, ModelOutput)
    assert train_out.logits.shape == (6, N_ITEMS)
    assert train_out.mu.shape == train_out.logvar.shape == train_out.z.shape == (6, 5)
    assert train_out.anchor_centroid.shape == (6, 5) and train_out.anchor_sq_norm.shape == (6,)
    assert not torch.equal(train_out.z, train_out.mu)  # a sample in training
    eval_out = model.eval()(x)
    assert torch.equal(eval_out.z, eval_out.mu)  # scoring uses mu
    assert eval_out.anchor_centroid is None  # PIA is training-only
    assert torch.equal(model(x).logits, eval_out.logits)  # eval is deterministic (no mask)


@pytest.mark.parametrize("name", ["multvae", "multdae", "recvae"])
def test_gradients_reach_anchors_encoder_and_decoder(name):
    torch.manual_seed(0)
    model = build_model(config(name, pia=True), N_ITEMS).train()
    x = batch()
    loss, _ = total_loss(model(x), x, beta=0.2, lambda_a=0.5, gamma=0.005 if name == "recvae" else 0.0)
    loss.backward()
    groups = {
        "anchors": list(model.anchors.parameters()),
        "encoder": model.base.encoder_parameters(),
        "decoder": model.base.decoder_parameters(),
    }
    for group, parameters in groups.items():
        for parameter in parameters:
            assert parameter.grad is not None, group
            assert parameter.grad.abs().sum() > 0, group
    # Every trainable parameter gets a gradient in every backward: DDP needs no unused-parameter search.
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


def test_recvae_prior_encoder_is_frozen_and_refreshed():
    torch.manual_seed(0)
    model = build_model(config("recvae"), N_ITEMS).train()
    base = model.base
    assert all(not p.requires_grad for p in base.old_encoder.parameters())
    assert not any(p is q for p in model.encoder_parameters() for q in base.old_encoder.parameters())
    out = model(batch())
    assert out.prior_mu.shape == (6, 5) and not out.prior_mu.requires_grad
    with torch.no_grad():
        for parameter in base.encoder.parameters():
            parameter.add_(1.0)
    model.refresh_prior()
    for current, old in zip(base.encoder.state_dict().values(), base.old_encoder.state_dict().values()):
        assert torch.equal(current, old)


def test_parameter_groups_partition_the_trainable_parameters():
    model = build_model(config("recvae", pia=True), N_ITEMS)
    encoder = {id(p) for p in model.encoder_parameters()}
    decoder = {id(p) for p in model.decoder_parameters()}
    trainable = {id(p) for p in model.parameters() if p.requires_grad}
    assert not encoder & decoder
    assert encoder | decoder == trainable
    assert id(model.anchors.weight) in encoder
