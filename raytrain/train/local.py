"""Train and evaluate in a plain process on in-memory Arrow tables (tests, benchmarks).

Same loop functions as the Ray trainer, fed by :func:`raytrain.data.batches.train_batches`.
The result is the model at the epoch with the best validation NDCG@100 (Algorithm 1, line 20).
"""

from __future__ import annotations

import copy
import logging
import math
from dataclasses import dataclass, field
from typing import Iterator

import pyarrow as pa
import torch

from raytrain.config import Config
from raytrain.data.batches import eval_batches, train_batches
from raytrain.metrics import DEFAULT_KS
from raytrain.models import build_model
from raytrain.models.recommender import Recommender
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


@dataclass
class FitResult:
    """Outcome of :func:`fit`.

    Attributes:
        model: the best model by validation NDCG@100 (eval mode).
        state: the final :class:`TrainState`.
        history: one dict per epoch (training stats, plus ``val/...`` metrics when evaluated).
        val: validation metrics of the best epoch.
        test: test metrics of the best model (empty without a test table).
    """

    model: torch.nn.Module
    state: TrainState
    history: list[dict[str, float]] = field(default_factory=list)
    val: dict[str, float] = field(default_factory=dict)
    test: dict[str, float] = field(default_factory=dict)


def evaluate_table(
    model: torch.nn.Module,
    table: pa.Table,
    n_items: int,
    batch_size: int = 2000,
    ks: tuple[int, ...] = DEFAULT_KS,
    diagnostic_users: int = 256,
) -> dict[str, float]:
    """Mean metrics of ``model`` on a fold-in/held-out table."""
    batches = eval_batches(table, n_items, batch_size)
    return evaluate(model, batches, "cpu", ks, diagnostic_users=diagnostic_users).means()


def fit(
    config: Config,
    train: pa.Table,
    val: pa.Table,
    n_items: int,
    test: pa.Table | None = None,
    model: Recommender | None = None,
) -> FitResult:
    """Train ``config.train.epochs`` epochs on CPU in this process.

    Args:
        config: the run config (model, PIA, train sections are used).
        train: table with an ``items`` list column.
        val: table with ``fold_in``/``held_out`` list columns.
        n_items: catalogue size.
        test: optional table like ``val``, evaluated once with the best model.
        model: start from this model instead of a fresh one (seeded with ``train.seed``).
    """
    torch.manual_seed(config.train.seed)
    model = model if model is not None else build_model(config.model, n_items)
    optimizers = make_optimizers(model, config)
    state = initial_state(config)
    batch_size = config.train.batch_size
    total_updates = config.train.epochs * updates_per_epoch(config.model, math.ceil(train.num_rows / batch_size))
    best_weights = copy.deepcopy(model.state_dict())
    result = FitResult(model, state)
    for epoch in range(config.train.epochs):

        def make_batches(epoch: int = epoch) -> Iterator[torch.Tensor]:
            return train_batches(train, n_items, batch_size, seed=config.train.seed * 10_007 + epoch)

        stats = train_epoch(model, optimizers, make_batches, state, config, total_updates, "cpu")
        if state.epoch % config.train.eval_every == 0 or state.epoch == config.train.epochs:
            metrics = evaluate_table(model, val, n_items, config.train.eval_batch_size)
            stats.update({f"val/{name}": value for name, value in metrics.items()})
            state = end_of_epoch(state, metrics["ndcg@100"], config)
            if state.best_epoch == state.epoch:
                best_weights = copy.deepcopy(model.state_dict())
                result.val = metrics
            logger.info(
                "epoch %d | loss %.3f | val ndcg@100 %.4f | lambda_a %.3g | %.0f users/s",
                state.epoch, stats["loss"], metrics["ndcg@100"], state.lambda_a, stats["users_per_second"],
            )
        result.history.append(stats)
    model.load_state_dict(best_weights)
    model.eval()
    result.state = state
    if test is not None:
        result.test = evaluate_table(model, test, n_items, config.train.eval_batch_size)
    return result
