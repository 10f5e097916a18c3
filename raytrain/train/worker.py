"""The function every Ray Train worker runs: resume, stream the train shard, DDP, evaluate, report.

All model maths lives in :mod:`raytrain.train.loop` (no Ray there); this module only wires it to
Ray Train: dataset shards, the process group, all-reduces, checkpoints and ``ray.train.report``.
"""

from __future__ import annotations

import itertools
import logging
import math
import os
import tempfile
import time
from dataclasses import dataclass
from typing import Any, Iterator

import pyarrow as pa
import ray.train
import ray.train.torch
import torch
import torch.distributed as dist

from raytrain.config import Config, from_dict
from raytrain.data.batches import TrainCollate, eval_batches
from raytrain.data.prepared import PreparedDataset
from raytrain.metrics import MetricSums
from raytrain.models.build import build_model
from raytrain.train import checkpoint as ckpt
from raytrain.train.evaluation import overall_only
from raytrain.train.loop import (
    TrainState,
    end_of_epoch,
    evaluate,
    initial_state,
    make_optimizers,
    train_epoch,
    updates_per_epoch,
)

logger = logging.getLogger(__name__)

FAULT_MARKER = "injected_fault_done"


@dataclass(frozen=True)
class WorkerPlan:
    """What every rank needs to know, computed once on the driver and sent as plain values."""

    config: dict[str, Any]
    prepared_path: str
    n_items: int
    n_train_users: int
    vocab_fingerprint: str
    fault_marker_dir: str

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _world() -> tuple[int, int]:
    context = ray.train.get_context()
    return context.get_world_rank(), context.get_world_size()


def _all_reduce(values: torch.Tensor, op: Any = None) -> torch.Tensor:
    """Sum (or ``op``) a CPU tensor across ranks; a no-op on one worker."""
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        device = ray.train.torch.get_device() if dist.get_backend() == "nccl" else torch.device("cpu")
        moved = values.to(device)
        dist.all_reduce(moved, op=op or dist.ReduceOp.SUM)
        return moved.cpu()
    return values


def _reduce_train_stats(stats: dict[str, float], world: int) -> dict[str, float]:
    """Users add up, wall time is the slowest rank's, everything else is averaged over ranks."""
    keys = sorted(stats)
    summed = _all_reduce(torch.tensor([float(stats[k]) for k in keys], dtype=torch.float64))
    slowest = _all_reduce(torch.tensor([float(stats.get("seconds", 0.0))], dtype=torch.float64), dist.ReduceOp.MAX)
    out = {k: summed[i].item() / (1 if k == "users" else world) for i, k in enumerate(keys)}
    out["seconds"] = slowest.item()
    out["users_per_second"] = out.get("users", 0.0) / max(out["seconds"], 1e-9)
    return out


def _eval_slice(prepared: PreparedDataset, split: str, rank: int, world: int) -> pa.Table:
    """This rank's users of a held-out split: every world-th row, so shards are disjoint and exact."""
    table = prepared.read_split(split)
    return table.take(pa.array(range(rank, table.num_rows, world), type=pa.int64()))


def evaluate_sharded(
    model: torch.nn.Module, table: pa.Table, n_items: int, batch_size: int, device: torch.device
) -> dict[str, float]:
    """Metric sums over this rank's users, all-reduced, turned into means over all users."""
    sums = evaluate(model, eval_batches(table, n_items, batch_size), device)
    return overall_only(MetricSums.from_tensor(_all_reduce(sums.to_tensor())).means())


def _restore(model: torch.nn.Module, optimizers: Any, plan: WorkerPlan, config: Config):
    """Load the latest checkpoint Ray hands this (restarted or resumed) run, if any."""
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is None:
        return initial_state(config), []
    with checkpoint.as_directory() as directory:
        payload = ckpt.load_checkpoint(directory)
    ckpt.check_compatible(
        payload, n_items=plan.n_items, vocab_fingerprint=plan.vocab_fingerprint, config=config,
        source=f"checkpoint {checkpoint.path}",
    )
    model.load_state_dict(payload["model"])
    optimizers.load_state_dict(payload["optimizers"])
    state = TrainState.from_dict(payload["train_state"])
    logger.info("resuming from %s at epoch %d", checkpoint.path, state.epoch)
    return state, list(payload["history"])


def _maybe_inject_fault(config: Config, plan: WorkerPlan, epoch: int, rank: int, world: int) -> None:
    """Test hook: the last rank dies once, hard, after ``train.fail_at_epoch`` was checkpointed."""
    if config.train.fail_at_epoch != epoch or rank != world - 1:
        return
    marker = os.path.join(plan.fault_marker_dir, FAULT_MARKER)
    if os.path.exists(marker):
        return
    os.makedirs(plan.fault_marker_dir, exist_ok=True)
    with open(marker, "w") as handle:
        handle.write(f"rank {rank} killed after epoch {epoch}\n")
    logger.warning("fault injection: rank %d exits after epoch %d", rank, epoch)
    os._exit(1)


def _train_batches(shard: Any, n_items: int, batch_size: int, config: Config, epoch: int, rank: int):
    """A factory of fresh passes over this rank's shard (RecVAE makes several passes per epoch)."""
    passes = itertools.count()

    def make() -> Iterator[torch.Tensor]:
        seed = config.train.seed * 1_000_003 + epoch * 1009 + rank * 17 + next(passes)
        return shard.iter_torch_batches(
            batch_size=batch_size,
            collate_fn=TrainCollate(n_items),
            prefetch_batches=2,
            local_shuffle_buffer_size=config.train.shuffle_buffer or None,
            local_shuffle_seed=seed if config.train.shuffle_buffer else None,
        )

    return make


def _checkpoint_payload(model, optimizers, state, config, plan, history) -> dict[str, Any]:
    base = model.module if hasattr(model, "module") else model
    return ckpt.make_payload(
        model_state={k: v.detach().cpu() for k, v in base.state_dict().items()},
        optimizer_states=optimizers.state_dict(),
        train_state=state.to_dict(),
        config=config,
        n_items=plan.n_items,
        vocab_fingerprint=plan.vocab_fingerprint,
        history=history,
    )


def _report(metrics: dict[str, float], payload: dict[str, Any] | None, rank: int) -> None:
    """Every rank reports (it is a barrier); only rank 0 attaches the checkpoint."""
    if payload is not None and rank == 0:
        with tempfile.TemporaryDirectory() as directory:
            ckpt.save_checkpoint(directory, payload)
            ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(directory))
    else:
        ray.train.report(metrics)


def _setup_worker_logging() -> None:
    """Our INFO lines reach the driver; Ray's own loggers keep their levels."""
    package = logging.getLogger("raytrain")
    if not package.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        package.addHandler(handler)
        package.setLevel(logging.INFO)
        package.propagate = False


def train_loop_per_worker(plan_dict: dict[str, Any]) -> list[dict[str, float]]:
    """Ray Train entry point; returns the per-epoch history (rank 0's is the run's)."""
    _setup_worker_logging()
    plan = WorkerPlan(**plan_dict)
    config = from_dict(plan.config)
    rank, world = _world()
    torch.set_num_threads(max(1, int(config.scaling.cpus_per_worker)))
    torch.manual_seed(config.train.seed)  # same initial weights on every rank (DDP also broadcasts)
    device = ray.train.torch.get_device()
    autocast_dtype = torch.bfloat16 if (config.train.bf16 and device.type == "cuda") else None

    model = build_model(config.model, plan.n_items).to(device)
    optimizers = make_optimizers(model, config)
    state, history = _restore(model, optimizers, plan, config)
    # Every trainable parameter gets a gradient in every backward, RecVAE's alternating passes included
    # (tests/train/test_loop_ddp.py), so DDP needs no unused-parameter search.
    model = ray.train.torch.prepare_model(model, move_to_device=False)

    prepared = PreparedDataset.open(plan.prepared_path)
    val_table = _eval_slice(prepared, "val", rank, world)
    shard = ray.train.get_dataset_shard("train")
    per_rank_batch = max(1, config.train.batch_size // world)
    batches_per_pass = math.ceil((plan.n_train_users // world) / per_rank_batch)
    total_updates = max(1, updates_per_epoch(config.model, batches_per_pass) * config.train.epochs)

    for epoch in range(state.epoch, config.train.epochs):
        started = time.perf_counter()
        make_batches = _train_batches(shard, plan.n_items, per_rank_batch, config, epoch, rank)
        stats = train_epoch(model, optimizers, make_batches, state, config, total_updates, device, autocast_dtype)
        stats = _reduce_train_stats(stats, world)
        metrics: dict[str, float] = {"epoch": epoch + 1, **{f"train/{k}": v for k, v in stats.items()}}
        evaluated = (epoch + 1) % config.train.eval_every == 0 or epoch + 1 == config.train.epochs
        if evaluated:
            val = evaluate_sharded(model, val_table, plan.n_items, config.train.eval_batch_size, device)
            metrics.update({f"val/{k}": v for k, v in val.items()})
            state = end_of_epoch(state, val["ndcg@100"], config)
        else:
            state = end_of_epoch(state, None, config)
        metrics.update({"lambda_A": state.lambda_a, "beta": state.beta, "epoch_seconds": time.perf_counter() - started})
        history.append(metrics)
        if rank == 0:
            logger.info(
                "epoch %d | loss %.4f | val ndcg@100 %s | lambda_A %.3g | beta %.3f | %s users/s",
                epoch + 1, stats.get("loss", float("nan")),
                f"{metrics['val/ndcg@100']:.4f}" if evaluated else "-", state.lambda_a, state.beta,
                f"{stats['users_per_second']:,.0f}",
            )
        payload = _checkpoint_payload(model, optimizers, state, config, plan, history) if evaluated else None
        _report(metrics, payload, rank)
        _maybe_inject_fault(config, plan, epoch + 1, rank, world)
    return history
