"""Ranking metrics of Liang et al. (2018), summed per batch so shards can be all-reduced.

For a user with held-out set ``H`` and fold-in items excluded from the ranking:

    Recall@k = |top_k ∩ H| / min(k, |H|)
    NDCG@k   = DCG@k / IDCG@k,  DCG@k = sum_{r=1..k} [item_r in H] / log2(r + 1),
               IDCG@k = sum_{r=1..min(k, |H|)} 1 / log2(r + 1)

Users with an empty held-out set are excluded (they count in no denominator). Ties in the
scores are broken by ``torch.topk`` (implementation-defined, like Liang's ``argpartition``).
Results are also broken down by the user's fold-in count.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from raytrain.models.sparse import row_indices

DEFAULT_KS = (20, 50, 100)
# (name, smallest, largest) fold-in count of each activity group.
ACTIVITY_GROUPS = (
    ("<5", 0, 4),
    ("5-10", 5, 10),
    ("11-50", 11, 50),
    ("51-100", 51, 100),
    ("100+", 101, math.inf),
)
# Summed diagnostic quantities (see raytrain/train/diagnostics.py); their means divide by users.
DIAGNOSTICS = ("diagnostic_users", "mask_variance", "mask_spread", "centroid_distance")


def _row_counts(x: torch.Tensor) -> torch.Tensor:
    crow = x.crow_indices()
    return (crow[1:] - crow[:-1]).long()


def exclude_fold_in(logits: torch.Tensor, fold_in: torch.Tensor) -> torch.Tensor:
    """Scores ``(B, I)`` float32 with every fold-in item set to ``-inf`` (a copy)."""
    scores = logits.float().clone()
    scores[row_indices(fold_in), fold_in.col_indices().long()] = -math.inf
    return scores


def user_metrics(
    logits: torch.Tensor, fold_in: torch.Tensor, held_out: torch.Tensor, ks: tuple[int, ...] = DEFAULT_KS
) -> dict[str, torch.Tensor]:
    """Per-user NDCG@k and Recall@k.

    Args:
        logits: scores ``(B, I)``.
        fold_in: CSR ``(B, I)``: items the user showed the model (excluded from the ranking).
        held_out: CSR ``(B, I)``: the targets.
        ks: cut-offs.

    Returns:
        ``ndcg@k`` and ``recall@k`` ``(B,)`` float64 (NaN where ``held_out`` is empty), plus
        ``n_held_out`` and ``n_fold_in`` ``(B,)`` int64.
    """
    scores = exclude_fold_in(logits, fold_in)
    n_held_out = _row_counts(held_out)
    k_max = min(max(ks), scores.shape[1])
    top_items = torch.topk(scores, k_max, dim=1, sorted=True).indices
    targets = held_out.to_dense() > 0
    hits = targets.gather(1, top_items).double()
    positions = torch.arange(k_max, device=scores.device, dtype=torch.float64)
    discounts = 1.0 / torch.log2(positions + 2.0)
    ideal = torch.cumsum(discounts, dim=0)
    empty = n_held_out == 0
    result = {"n_held_out": n_held_out, "n_fold_in": _row_counts(fold_in)}
    for k in ks:
        k_eff = min(k, k_max)
        denominator = torch.clamp(n_held_out, max=k_eff).clamp_min(1)
        dcg = (hits[:, :k_eff] * discounts[:k_eff]).sum(dim=1)
        ndcg = dcg / ideal[denominator - 1]
        recall = hits[:, :k_eff].sum(dim=1) / torch.clamp(n_held_out, max=k).clamp_min(1)
        result[f"ndcg@{k}"] = ndcg.masked_fill(empty, math.nan)
        result[f"recall@{k}"] = recall.masked_fill(empty, math.nan)
    return result


def _names(ks: tuple[int, ...]) -> list[str]:
    names = []
    for group in ("all", *(name for name, _, _ in ACTIVITY_GROUPS)):
        names.append(f"users/{group}")
        names += [f"{metric}@{k}/{group}" for metric in ("ndcg", "recall") for k in ks]
    return names + list(DIAGNOSTICS)


@dataclass
class MetricSums:
    """Sums of per-user metrics (and user counts) per activity group, plus diagnostic sums.

    Attributes:
        ks: the cut-offs.
        sums: float64 vector laid out as ``_names(ks)``; all-reduce ``to_tensor()`` to combine.
    """

    ks: tuple[int, ...]
    sums: torch.Tensor

    @classmethod
    def zeros(cls, ks: tuple[int, ...] = DEFAULT_KS, device: torch.device | str = "cpu") -> "MetricSums":
        return cls(tuple(ks), torch.zeros(len(_names(tuple(ks))), dtype=torch.float64, device=device))

    @classmethod
    def from_tensor(cls, tensor: torch.Tensor, ks: tuple[int, ...] = DEFAULT_KS) -> "MetricSums":
        """Inverse of :meth:`to_tensor` (``ks`` must match the producer's)."""
        if tensor.numel() != len(_names(tuple(ks))):
            raise ValueError(f"tensor of {tensor.numel()} values does not match ks={ks}")
        return cls(tuple(ks), tensor.to(torch.float64))

    def to_tensor(self) -> torch.Tensor:
        """The float64 vector of sums (on the device it was accumulated on)."""
        return self.sums

    def __add__(self, other: "MetricSums") -> "MetricSums":
        if self.ks != other.ks:
            raise ValueError(f"cannot add metrics with ks {self.ks} and {other.ks}")
        return MetricSums(self.ks, self.sums + other.sums.to(self.sums.device))

    def add_batch(self, logits: torch.Tensor, fold_in: torch.Tensor, held_out: torch.Tensor) -> None:
        """Accumulate one evaluation batch (users with empty ``held_out`` are skipped)."""
        per_user = user_metrics(logits, fold_in, held_out, self.ks)
        valid = per_user["n_held_out"] > 0
        n_fold_in = per_user["n_fold_in"]
        additions = []
        for low, high in [(0, math.inf), *((low, high) for _, low, high in ACTIVITY_GROUPS)]:
            member = valid & (n_fold_in >= low) & (n_fold_in <= high)
            additions.append(member.sum().double())
            for metric in ("ndcg", "recall"):
                for k in self.ks:
                    additions.append(per_user[f"{metric}@{k}"][member].sum())
        additions += [torch.zeros((), dtype=torch.float64, device=self.sums.device)] * len(DIAGNOSTICS)
        self.sums += torch.stack(additions).to(self.sums.device)

    def add_diagnostics(self, users: int, variance: float, spread: float, distance: float) -> None:
        """Accumulate mask-diagnostic sums over ``users`` users (see ``train/diagnostics.py``)."""
        offset = len(self.sums) - len(DIAGNOSTICS)
        self.sums[offset:] += torch.tensor([users, variance, spread, distance], dtype=torch.float64,
                                           device=self.sums.device)

    def means(self) -> dict[str, float]:
        """Mean metrics: ``ndcg@100``, ``recall@20``, ... and ``users`` overall; the same keys
        with ``/<group>`` for each non-empty activity group; diagnostics when computed."""
        values = dict(zip(_names(self.ks), self.sums.cpu().tolist()))
        result: dict[str, float] = {}
        for group in ("all", *(name for name, _, _ in ACTIVITY_GROUPS)):
            users = values[f"users/{group}"]
            suffix = "" if group == "all" else f"/{group}"
            if users == 0 and group != "all":
                continue
            result[f"users{suffix}"] = users
            for metric in ("ndcg", "recall"):
                for k in self.ks:
                    total = values[f"{metric}@{k}/{group}"]
                    result[f"{metric}@{k}{suffix}"] = total / users if users else math.nan
        diagnostic_users = values["diagnostic_users"]
        if diagnostic_users:
            result["mask_variance"] = values["mask_variance"] / diagnostic_users
            result["mask_variance_ratio"] = values["mask_variance"] / max(values["mask_spread"], 1e-30)
            result["centroid_distance"] = values["centroid_distance"] / diagnostic_users
        return result
