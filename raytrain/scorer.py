"""The scoring actor: one model per actor, Arrow batch of user histories -> top-N rows.

``TopNScorer`` is the callable class Ray Data's ``map_batches`` builds once per actor, so the
checkpoint is parsed and the module built once, not per batch. The maths is in :func:`top_n`
(pure torch, used by the actor, the tests and the benchmark's bare loop alike).
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pyarrow as pa
import torch

from raytrain.data.batches import list_column_to_csr
from raytrain.models.sparse import row_indices
from raytrain.train import checkpoint as ckpt

logger = logging.getLogger(__name__)

HISTORY_COLUMN = "items"  # list<int32> of item_idx: what the scorer reads besides user_id
UNKNOWN_COLUMN = "unknown"  # optional: the user's positive interactions with items the model does not know


class InjectedScoringFailure(RuntimeError):
    """Raised on purpose by ``score.fail_at_batch`` to test that a crashed run publishes nothing."""


def top_n(model: torch.nn.Module, x: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-``n`` unseen items per user from ``mu -> logits``.

    Args:
        model: a raytrain model in eval mode (forward uses ``mu``, no input mask).
        x: CSR ``(B, I)`` of the users' known items, on the model's device.
        n: items per user (at most ``I``).

    Returns:
        ``(scores, indices)``, each ``(B, n)``, scores descending; a seen item never appears: its
        score is ``-inf`` and such slots (only when a user has seen more than ``I - n`` items)
        must be dropped by the caller.
    """
    with torch.inference_mode():
        logits = model(x).logits.float()
        logits[row_indices(x), x.col_indices().long()] = float("-inf")
        n = min(n, logits.shape[1])
        if logits.device.type != "cpu" or n == logits.shape[1]:
            return torch.topk(logits, k=n, dim=1, sorted=True)
        return _cpu_top_n(logits, n)


def _cpu_top_n(logits: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``torch.topk`` on CPU via a linear-time partition, then sorting only the ``n`` winners.

    Measured (1024 x 4000, k=100, one thread): ~2x faster than ``torch.topk``, which on CPU costs
    as much as the whole decoder; on GPUs ``torch.topk`` is used.
    """
    scores = logits.numpy()
    top = np.argpartition(-scores, n - 1, axis=1)[:, :n]
    values = np.take_along_axis(scores, top, axis=1)
    order = np.argsort(-values, axis=1, kind="stable")
    values, top = np.take_along_axis(values, order, axis=1), np.take_along_axis(top, order, axis=1)
    return torch.from_numpy(values), torch.from_numpy(top)


def _ragged(values: np.ndarray, keep: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Flat kept values and list offsets from a ``(B, n)`` matrix and its keep mask."""
    offsets = np.zeros(keep.shape[0] + 1, dtype=np.int32)
    np.cumsum(keep.sum(axis=1), out=offsets[1:])
    return values[keep], offsets


class TopNScorer:
    """Ray Data callable class: ``pa.Table(user_id, items) -> pa.Table`` of recommendations.

    Output columns: ``user_id, item_ids list<original id>, scores list<float32>, fallback bool,
    unknown_items int32, model_version string`` (``run_date`` is the output partition, not a file
    column). Users with no known item get the most popular items
    (scores = popularity share) and ``fallback = True``: a VAE fed an empty row returns a fixed
    list that is not what it was trained to produce.
    """

    def __init__(
        self,
        *,
        model_ref: list[Any],  # [ObjectRef of checkpoint bytes] (wrapped so Ray does not inline it)
        item_ids: pa.Array,
        popularity: np.ndarray,
        top_n: int,
        model_version: str,
        device: str = "cpu",
        torch_threads: int = 0,
        fail_at_batch: int = -1,
    ) -> None:
        import ray

        if torch_threads > 0:
            torch.set_num_threads(torch_threads)
        blob = model_ref[0] if isinstance(model_ref[0], bytes) else ray.get(model_ref[0])
        payload = ckpt.parse_checkpoint(blob, f"model {model_version}")
        self.device = torch.device(device)
        self.model = ckpt.model_from_payload(payload, self.device)
        self.n_items = int(payload["shape"]["n_items"])
        self.item_ids = item_ids
        self.top_n = min(top_n, self.n_items)
        self.model_version = model_version
        self.fail_at_batch = fail_at_batch
        self.batches = 0
        order = np.argsort(-popularity, kind="stable")[: self.top_n]
        share = popularity[order] / max(1, popularity.sum())
        self.fallback_indices = order.astype(np.int64)
        self.fallback_scores = share.astype(np.float32)

    def __call__(self, batch: pa.Table) -> pa.Table:
        self.batches += 1
        if self.batches - 1 == self.fail_at_batch:
            raise InjectedScoringFailure(f"score.fail_at_batch={self.fail_at_batch}: failing on purpose")
        x = list_column_to_csr(batch.column(HISTORY_COLUMN), self.n_items)
        fallback = (np.diff(x.crow_indices().numpy()) == 0)
        scores, indices = top_n(self.model, x.to(self.device), self.top_n)
        scores, indices = scores.cpu().numpy(), indices.cpu().numpy()
        if fallback.any():
            scores[fallback] = self.fallback_scores
            indices[fallback] = self.fallback_indices
        flat_scores, offsets = _ragged(scores, np.isfinite(scores))
        flat_indices, _ = _ragged(indices, np.isfinite(scores))
        offsets_array = pa.array(offsets, type=pa.int32())
        rows = batch.num_rows
        unknown = (batch.column(UNKNOWN_COLUMN).cast(pa.int32()) if UNKNOWN_COLUMN in batch.column_names
                   else pa.array(np.zeros(rows, dtype=np.int32)))
        return pa.table({
            "user_id": batch.column("user_id"),
            "item_ids": pa.ListArray.from_arrays(offsets_array, self.item_ids.take(pa.array(flat_indices))),
            "scores": pa.ListArray.from_arrays(offsets_array, pa.array(flat_scores, type=pa.float32())),
            "fallback": pa.array(fallback, type=pa.bool_()),
            "unknown_items": unknown,
            "model_version": pa.array([self.model_version] * rows, type=pa.string()),
        })
