"""The loop under DistributedDataParallel (2 gloo processes, find_unused_parameters=False).

RecVAE's alternating passes step one optimizer at a time; every trainable parameter still gets
a gradient in every backward, so plain DDP works and ranks stay in sync.
"""

import os

import numpy as np
import pyarrow as pa
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from raytrain.config import Config, replace
from raytrain.data.batches import eval_batches, train_batches
from raytrain.metrics import MetricSums
from raytrain.models import build_model
from raytrain.train.loop import end_of_epoch, evaluate, initial_state, make_optimizers, train_epoch

pytestmark = pytest.mark.filterwarnings("ignore:Sparse CSR tensor support")

N_ITEMS = 30
WORLD = 2
MODELS = ("multvae", "recvae")


def rank_tables(rank: int) -> tuple[pa.Table, pa.Table]:
    rng = np.random.default_rng(100 + rank)  # different users on each rank
    rows = [sorted(rng.choice(N_ITEMS, size=rng.integers(3, 10), replace=False).tolist()) for _ in range(40)]
    train = pa.table({"items": pa.array(rows, type=pa.list_(pa.int32()))})
    val = pa.table({
        "fold_in": pa.array([r[:2] for r in rows[:8]], type=pa.list_(pa.int32())),
        "held_out": pa.array([r[2:] for r in rows[:8]], type=pa.list_(pa.int32())),
    })
    return train, val


def worker(rank: int, init_file: str, out_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD)
    # One process group for both models: spawning workers costs more than training them.
    for name in MODELS:
        train_one(rank, name, out_dir)
    dist.destroy_process_group()


def train_one(rank: int, name: str, out_dir: str) -> None:
    config = replace(Config(), [f"model.name={name}", "model.hidden_dim=8", "model.latent_dim=3",
                                "model.pia.enabled=true", "model.recvae_encoder_epochs=2", "train.batch_size=10"])
    torch.manual_seed(config.train.seed)
    model = torch.nn.parallel.DistributedDataParallel(build_model(config.model, N_ITEMS), find_unused_parameters=False)
    optimizers = make_optimizers(model, config)
    state = initial_state(config)
    train, val = rank_tables(rank)
    for epoch in range(2):
        make = lambda: train_batches(train, N_ITEMS, 10, seed=epoch)  # noqa: E731
        train_epoch(model, optimizers, make, state, config, total_updates=40, device="cpu")
        sums = evaluate(model, eval_batches(val, N_ITEMS, 5), "cpu").to_tensor()
        dist.all_reduce(sums)
        state = end_of_epoch(state, MetricSums.from_tensor(sums).means()["ndcg@100"], config)
    flat = torch.cat([p.detach().flatten() for p in model.module.parameters()])
    gathered = [torch.zeros_like(flat) for _ in range(WORLD)]
    dist.all_gather(gathered, flat)
    in_sync = all(torch.equal(gathered[0], other) for other in gathered[1:])
    with open(os.path.join(out_dir, f"{name}-rank{rank}.txt"), "w") as handle:
        handle.write(f"{in_sync} {state.step} {state.best_ndcg}")


def test_ddp_training_without_unused_parameter_search_keeps_ranks_in_sync(tmp_path):
    # With find_unused_parameters=False, DDP raises on the 2nd update if any trainable
    # parameter missed a gradient (checked by hand with an extra unused parameter).
    mp.start_processes(worker, args=(str(tmp_path / "init"), str(tmp_path)), nprocs=WORLD, start_method="spawn")
    for name in MODELS:
        results = [(tmp_path / f"{name}-rank{rank}.txt").read_text().split() for rank in range(WORLD)]
        expected_steps = 2 * 4 * (3 if name == "recvae" else 1)  # epochs * batches * passes
        for in_sync, steps, best in results:
            assert in_sync == "True", name
            assert int(steps) == expected_steps, name
            assert 0.0 <= float(best) <= 1.0
        assert results[0][2] == results[1][2]  # all-reduced validation metrics agree
