"""Training loop: lambda_A schedule, beta annealing, RecVAE alternation, determinism and resume."""

import io
import math

import numpy as np
import pyarrow as pa
import pytest
import torch

from raytrain.config import Config, replace
from raytrain.data.batches import eval_batches, train_batches
from raytrain.models import build_model
from raytrain.models.losses import beta_at_step
from raytrain.train.local import fit
from raytrain.train.loop import (
    TrainState,
    end_of_epoch,
    evaluate,
    initial_state,
    make_optimizers,
    train_epoch,
    updates_per_epoch,
)

pytestmark = pytest.mark.filterwarnings("ignore:Sparse CSR tensor support")

N_ITEMS = 40
SMALL = ["model.hidden_dim=16", "model.latent_dim=4", "train.batch_size=20", "train.epochs=3"]


def random_lists(users: int, seed: int, low: int = 2, high: int = 12) -> list[list[int]]:
    rng = np.random.default_rng(seed)
    return [sorted(rng.choice(N_ITEMS, size=rng.integers(low, high), replace=False).tolist()) for _ in range(users)]


def train_table(users: int = 60, seed: int = 0) -> pa.Table:
    return pa.table({"items": pa.array(random_lists(users, seed), type=pa.list_(pa.int32()))})


def eval_table(users: int = 10, seed: int = 1) -> pa.Table:
    rows = random_lists(users, seed, low=4, high=14)
    return pa.table({
        "fold_in": pa.array([row[: len(row) // 2] for row in rows], type=pa.list_(pa.int32())),
        "held_out": pa.array([row[len(row) // 2:] for row in rows], type=pa.list_(pa.int32())),
    })


def make_config(*overrides: str) -> Config:
    return replace(Config(), [*SMALL, *overrides])


def schedule(config: Config, val_ndcgs: list[float | None]) -> list[float]:
    state = initial_state(config)
    lambdas = []
    for ndcg in val_ndcgs:
        state.epoch += 1  # what train_epoch does
        state = end_of_epoch(state, ndcg, config)
        lambdas.append(state.lambda_a)
    return lambdas


def test_lambda_schedule_fires_exactly_after_patience_stale_epochs_and_is_capped():
    config = make_config("model.pia.enabled=true", "model.pia.lambda_a=0.5", "model.pia.lambda_scale=2",
                         "model.pia.patience=2", "model.pia.lambda_max=4")
    ndcgs = [0.1, 0.1, 0.05, 0.2, 0.2, 0.2, 0.1, 0.1, 0.1, 0.1]
    # Stale counts: 0,1,2(x2, reset),0,1,2(x2),1,2(x2),1,2(x2 -> capped at 4).
    assert schedule(config, ndcgs) == [0.5, 0.5, 1.0, 1.0, 1.0, 2.0, 2.0, 4.0, 4.0, 4.0]


def test_lambda_schedule_with_patience_one_and_unevaluated_epochs():
    config = make_config("model.pia.enabled=true", "model.pia.lambda_a=1", "model.pia.lambda_scale=3",
                         "model.pia.patience=1", "model.pia.lambda_max=100")
    # None = not evaluated: nothing changes then; the next evaluation sees 2 stale epochs.
    assert schedule(config, [0.3, 0.2, None, 0.1, 0.4]) == [1.0, 3.0, 3.0, 9.0, 9.0]


def test_fixed_lambda_and_disabled_pia_never_change():
    fixed = make_config("model.pia.enabled=true", "model.pia.lambda_scale=1", "model.pia.patience=1")
    assert schedule(fixed, [0.3, 0.2, 0.1, 0.0]) == [0.5] * 4
    disabled = make_config("model.pia.lambda_scale=2", "model.pia.patience=1")
    assert schedule(disabled, [0.3, 0.2, 0.1]) == [0.0] * 3


def test_best_epoch_tracking():
    state = TrainState()
    config = make_config()
    for ndcg in (0.2, 0.4, 0.3):
        state.epoch += 1
        state = end_of_epoch(state, ndcg, config)
    assert (state.best_epoch, state.best_ndcg) == (2, 0.4)


def test_train_state_round_trips_through_torch_save_with_weights_only():
    state = TrainState(epoch=3, step=17, lambda_a=2.0, beta=0.1, best_ndcg=0.42, best_epoch=2, lambda_epoch=1)
    buffer = io.BytesIO()
    torch.save({"train_state": state.to_dict()}, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=True)
    assert TrainState.from_dict(loaded["train_state"]) == state
    with pytest.raises(ValueError, match="unknown"):
        TrainState.from_dict({**state.to_dict(), "bogus": 1})


def run_epochs(config: Config, model, optimizers, state, epochs: int, table: pa.Table, total_updates: int):
    stats = []
    for _ in range(epochs):
        epoch = state.epoch
        stats.append(train_epoch(
            model, optimizers, lambda: train_batches(table, N_ITEMS, config.train.batch_size, seed=epoch),
            state, config, total_updates, "cpu",
        ))
    return stats


def test_beta_is_annealed_by_update_count_to_its_cap():
    config = make_config("train.anneal_fraction=0.5", "train.beta_cap=0.2")
    torch.manual_seed(0)
    model = build_model(config.model, N_ITEMS)
    optimizers, state = make_optimizers(model, config), initial_state(config)
    table = train_table(60)  # 3 batches of 20 per epoch, 12 updates in 4 epochs, cap at update 6
    stats = run_epochs(config, model, optimizers, state, 4, table, total_updates=12)
    assert state.step == 12
    assert [s["beta"] for s in stats] == pytest.approx([0.2 * 2 / 6, 0.2 * 5 / 6, 0.2, 0.2])
    assert beta_at_step(5, 12, 0.2, 0.5) < 0.2 == beta_at_step(6, 12, 0.2, 0.5)
    assert all(math.isfinite(s["loss"]) for s in stats)
    assert stats[0]["users"] == 60


def test_recvae_epoch_alternates_and_refreshes_the_prior():
    config = make_config("model.name=recvae", "model.pia.enabled=true", "model.recvae_encoder_epochs=2",
                         "model.recvae_decoder_epochs=1")
    torch.manual_seed(0)
    model = build_model(config.model, N_ITEMS)
    optimizers, state = make_optimizers(model, config), initial_state(config)
    assert sorted(optimizers.state_dict()) == ["decoder", "encoder"]
    decoder_before = model.base.decoder.weight.detach().clone()
    stats = run_epochs(config, model, optimizers, state, 1, train_table(60), total_updates=9)
    assert state.step == updates_per_epoch(config.model, 3) == 9
    assert stats[0]["users"] == 180
    assert not torch.equal(model.base.decoder.weight, decoder_before)
    # The decoder pass steps only the decoder, so the encoder still equals its refreshed copy.
    encoder, old = model.base.encoder.state_dict(), model.base.old_encoder.state_dict()
    assert all(torch.equal(encoder[name], old[name]) for name in encoder)


@pytest.mark.parametrize("name", ["multvae", "recvae"])
def test_resume_from_a_checkpoint_matches_an_unbroken_run(name):
    config = make_config(f"model.name={name}", "model.pia.enabled=true", "model.recvae_encoder_epochs=1")
    table = train_table(50)

    def fresh():
        torch.manual_seed(config.train.seed)
        model = build_model(config.model, N_ITEMS)
        return model, make_optimizers(model, config), initial_state(config)

    model, optimizers, state = fresh()
    run_epochs(config, model, optimizers, state, 3, table, total_updates=9)

    interrupted, interrupted_optimizers, interrupted_state = fresh()
    run_epochs(config, interrupted, interrupted_optimizers, interrupted_state, 2, table, total_updates=9)
    buffer = io.BytesIO()
    torch.save({"model": interrupted.state_dict(), "optimizers": interrupted_optimizers.state_dict(),
                "state": interrupted_state.to_dict()}, buffer)
    buffer.seek(0)
    payload = torch.load(buffer, weights_only=True)
    resumed, resumed_optimizers, _ = fresh()
    resumed.load_state_dict(payload["model"])
    resumed_optimizers.load_state_dict(payload["optimizers"])
    resumed_state = TrainState.from_dict(payload["state"])
    run_epochs(config, resumed, resumed_optimizers, resumed_state, 1, table, total_updates=9)
    assert resumed_state == state
    for (key, expected), actual in zip(model.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(expected, actual), key


def test_fit_is_deterministic_under_a_seed_and_evaluates_best_model():
    config = make_config("model.pia.enabled=true", "train.epochs=3")
    first = fit(config, train_table(60), eval_table(), N_ITEMS, test=eval_table(seed=2))
    second = fit(config, train_table(60), eval_table(), N_ITEMS, test=eval_table(seed=2))
    assert first.test == pytest.approx(second.test, nan_ok=True)
    assert [h["loss"] for h in first.history] == [h["loss"] for h in second.history]
    assert first.state.best_ndcg == pytest.approx(first.val["ndcg@100"])
    assert 0.0 <= first.test["ndcg@100"] <= 1.0
    assert len(first.history) == 3 and "val/ndcg@100" in first.history[0]


def test_evaluate_restores_training_mode_and_reports_diagnostics():
    config = make_config("model.pia.enabled=true")
    model = build_model(config.model, N_ITEMS).train()
    sums = evaluate(model, eval_batches(eval_table(), N_ITEMS, 4), "cpu", diagnostic_users=6)
    assert model.training
    means = sums.means()
    assert means["users"] == 10
    assert means["mask_variance"] > 0 and math.isfinite(means["centroid_distance"])
